"""How a group message shows its sender to a member's phone.

The server delivers a group message to each member in the member's own dialog,
so the SIP From is the focus (its URI and tag must stay the dialog's, RFC 3261
12.2.1.1) and no phone would show who wrote the message. Four modes
(`SenderDisplay`) put the sender where phones look:

- `cpim`: the body is wrapped in message/cpim (RFC 3862) whose From is the
  sender; for phones that render CPIM.
- `display-name`: the sender's name becomes the display name of the MESSAGE's
  From (`"alice" <sip:conf-main@...>;tag=...`): only the URI and tag are fixed
  by the dialog, the display name may change.
- `prefix`: a text/plain body starts with `alice: `; shown by every phone.
  Non-text bodies cannot take a prefix and fall back to `display-name`.
- `auto` (the default): `cpim` for members that listed message/cpim in an
  Accept header (of their INVITE or a MESSAGE), else `prefix` (or
  `display-name` for non-text bodies).

`X-Sipfleet-Sender: <sender AOR>` is sent in every mode, for programs. Pure:
the caller builds one `Delivery` per group message and picks a `Presentation`
per member, so a fan-out does the formatting once, not once per member.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sipfleet.node.sip.cpim import CPIM_TYPE, CpimMessage, wrap_cpim
from sipfleet.node.sip.message import HeaderBlock

SENDER_HEADER = "X-Sipfleet-Sender"


class SenderDisplay(StrEnum):
    """Where a member's phone finds the sender of a group message (module docstring)."""

    AUTO = "auto"
    CPIM = "cpim"
    DISPLAY_NAME = "display-name"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class Presentation:
    """One way of sending a group message to a member.

    `from_display` goes before the From header's `<URI>` (e.g. `'"alice" '`, or
    empty: the dialog's own); `extra` holds further header fields, including
    Content-Type; `body` is the MESSAGE body.
    """

    from_display: str
    extra: HeaderBlock
    body: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """The presentations of one group message: `plain` for members that do not take
    message/cpim, `cpim` for those that do (the same object when the mode does not
    depend on it)."""

    plain: Presentation
    cpim: Presentation

    def to(self, accepts_cpim: bool) -> Presentation:
        """The presentation for a member (`accepts_cpim`: `accepts_cpim(...)` of its Accept)."""
        return self.cpim if accepts_cpim else self.plain


def accepts_cpim(accept: str | None) -> bool:
    """Does an Accept header value (RFC 3261 20.1) list message/cpim explicitly?

    Wildcards (`*/*`, `message/*`) do not count: they do not say the phone renders
    CPIM rather than showing its headers as text.
    """
    if not accept:
        return False
    return any(part.split(";", 1)[0].strip().lower() == CPIM_TYPE for part in accept.split(","))


def sender_name(sender: str) -> str:
    """The name shown for a sender AOR: its user part (`sip:alice@example.com` ->
    `alice`), or the host when it has none; at most 64 characters."""
    rest = sender.split(":", 1)[-1].split(";", 1)[0]
    user, at, host = rest.partition("@")
    return (user if at and user else host or rest)[:64]


def _quoted(name: str) -> str:
    """`name` as an RFC 3261 25.1 quoted-string (control characters dropped)."""
    clean = "".join(c for c in name if c >= " " and c != "\x7f")
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_text_plain(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/plain"


def _headers(sender: str, content_type: str) -> HeaderBlock:
    return HeaderBlock([(SENDER_HEADER, f"<{sender}>"), ("Content-Type", content_type)])


def present(
    mode: SenderDisplay, sender: str, group: str, content_type: str, body: bytes
) -> Delivery:
    """The presentations of a group message from `sender` (AOR) to the group `group`
    (URI) in `mode`. `content_type` is the message's Content-Type; `body` its bytes."""
    name = sender_name(sender)
    display = Presentation(f"{_quoted(name)} ", _headers(sender, content_type), body)
    if _is_text_plain(content_type):
        prefix = Presentation("", display.extra, f"{name}: ".encode() + body)
    else:
        prefix = display
    # RFC 3862 3.3: Formal-name = 1*(Token SP) / String, so a quoted name is followed
    # directly by "<" (liblinphone rejects a space there as an invalid message).
    wrapped = wrap_cpim(CpimMessage(f"{_quoted(name)}<{sender}>", f"<{group}>", content_type, body))
    cpim = Presentation("", _headers(sender, CPIM_TYPE), wrapped)
    if mode is SenderDisplay.CPIM:
        return Delivery(cpim, cpim)
    if mode is SenderDisplay.DISPLAY_NAME:
        return Delivery(display, display)
    if mode is SenderDisplay.PREFIX:
        return Delivery(prefix, prefix)
    return Delivery(prefix, cpim)
