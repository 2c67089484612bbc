"""Random identifiers: tags, branches (with the RFC 3261 magic cookie), Call-IDs."""

import secrets

MAGIC_COOKIE = "z9hG4bK"


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(10)}@{host}"
