"""Random identifiers: tags, branches (with the RFC 3261 magic cookie), Call-IDs.

They come from os.urandom like `secrets.token_hex`, but read in 4 KiB batches:
a MESSAGE answered needs two (the To tag and the message id) and a fan-out one
per delivery (the branch), and one getrandom() syscall each was 1.6% of a
MESSAGE's CPU and 3.6% of a fan-out's (bench/results/profile.md, finding 6).
Measured with timeit: new_branch() 0.47-0.68 -> 0.21 us, new_tag() 0.43-0.62 ->
0.17-0.20 us. The values stay cryptographically random, as RFC 3261 19.3 asks
of tags.
"""

import os

MAGIC_COOKIE = "z9hG4bK"


class _RandomPool:
    """Random bytes from os.urandom, fetched a batch at a time."""

    __slots__ = ("_buffer", "_used")

    BATCH = 4096

    def __init__(self) -> None:
        self._buffer, self._used = b"", 0

    def hex(self, nbytes: int) -> str:
        start = self._used
        if start + nbytes > len(self._buffer):
            self._buffer, start = os.urandom(self.BATCH), 0
        self._used = start + nbytes
        return self._buffer[start : start + nbytes].hex()

    def reset(self) -> None:
        """Drop what is left (a forked child must not reuse its parent's bytes)."""
        self._buffer, self._used = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes as hex (like `secrets.token_hex(nbytes)`)."""
    return _pool.hex(nbytes)


def new_tag() -> str:
    return _pool.hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + _pool.hex(8)


def new_call_id(host: str) -> str:
    return f"{_pool.hex(10)}@{host}"
