"""How a group message shows its sender (presentation.py): mode selection and formatting."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sipfleet.node.config import Config, ConfigError
from sipfleet.node.presentation import (
    SenderDisplay,
    accepts_cpim,
    present,
    sender_name,
)
from sipfleet.node.sip import NameAddr, unwrap_cpim

ALICE = "sip:alice@example.org"
GROUP = "sip:conf7@example.com"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("application/sdp", False),
        ("application/sdp, message/cpim", True),
        ("text/plain,Message/CPIM;q=0.5", True),
        ("*/*", False),  # a wildcard does not say CPIM is rendered
        ("message/*", False),
        ("message/cpimx", False),
    ],
)
def test_accepts_cpim(accept: str | None, expected: bool) -> None:
    assert accepts_cpim(accept) is expected


@pytest.mark.parametrize(
    ("aor", "name"),
    [
        (ALICE, "alice"),
        ("sips:bob@example.org;transport=tcp", "bob"),
        ("sip:example.org", "example.org"),
        ("sip:" + "x" * 100 + "@h", "x" * 64),
    ],
)
def test_sender_name(aor: str, name: str) -> None:
    assert sender_name(aor) == name


def test_auto_is_cpim_for_members_that_accept_it_else_a_prefix() -> None:
    delivery = present(SenderDisplay.AUTO, ALICE, GROUP, "text/plain", b"hello")
    plain, cpim = delivery.to(False), delivery.to(True)
    assert plain.body == b"alice: hello" and plain.from_display == ""
    assert b"Content-Type: text/plain\r\n" in plain.extra.data
    assert b"X-Sipfleet-Sender: <sip:alice@example.org>\r\n" in plain.extra.data
    assert cpim.from_display == "" and b"Content-Type: message/cpim\r\n" in cpim.extra.data
    assert b"X-Sipfleet-Sender: <sip:alice@example.org>\r\n" in cpim.extra.data
    message = unwrap_cpim(cpim.body)  # RFC 3862: the sender in the CPIM From
    assert NameAddr.parse(message.from_) == NameAddr(ALICE, "alice")
    assert message.to == f"<{GROUP}>"
    assert (message.content_type, message.body) == ("text/plain", b"hello")


def test_non_text_bodies_are_not_prefixed() -> None:
    delivery = present(SenderDisplay.PREFIX, ALICE, GROUP, "application/json", b"{}")
    shown = delivery.to(False)
    assert shown.body == b"{}" and shown.from_display == '"alice" '
    assert present(SenderDisplay.AUTO, ALICE, GROUP, "image/png", b"\x89").to(False).body == b"\x89"


@pytest.mark.parametrize("accepts", [False, True])
def test_fixed_modes_ignore_what_the_member_accepts(accepts: bool) -> None:
    display = present(SenderDisplay.DISPLAY_NAME, ALICE, GROUP, "text/plain", b"hi").to(accepts)
    assert (display.from_display, display.body) == ('"alice" ', b"hi")
    prefix = present(SenderDisplay.PREFIX, ALICE, GROUP, "text/plain; charset=utf-8", b"hi")
    assert prefix.to(accepts).body == b"alice: hi"
    cpim = present(SenderDisplay.CPIM, ALICE, GROUP, "text/plain", b"hi").to(accepts)
    assert unwrap_cpim(cpim.body).body == b"hi"


def test_display_name_is_a_safe_quoted_string() -> None:
    odd = 'sip:a"b\\c\r\nX-Evil: 1@example.org'
    shown = present(SenderDisplay.DISPLAY_NAME, odd, GROUP, "text/plain", b"hi").to(False)
    assert "\r" not in shown.from_display and "\n" not in shown.from_display
    assert NameAddr.parse(shown.from_display + "<sip:x@h>").display == 'a"b\\cX-Evil: 1'


def test_config_refuses_an_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="sender display 'loud'"):
        Config("main", "m", "example.com", "127.0.0.1", 0, 0, "t", sender_display="loud")  # type: ignore[arg-type]


# The user part of a SIP URI (RFC 3261 25.1: unreserved and user-unreserved characters);
# the sender is always the URI of a request that parsed.
USERS = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.!~*'()&=+$,?/%", min_size=1, max_size=80
)


@settings(max_examples=200, deadline=None)
@given(user=USERS, body=st.binary(max_size=300), mode=st.sampled_from(list(SenderDisplay)))
def test_every_presentation_keeps_the_message_and_names_the_sender(
    user: str, body: bytes, mode: SenderDisplay
) -> None:
    sender = f"sip:{user}@example.org"
    name = sender_name(sender)
    for accepts in (False, True):
        shown = present(mode, sender, GROUP, "text/plain", body).to(accepts)
        assert shown.extra.data.startswith(f"X-Sipfleet-Sender: <{sender}>\r\n".encode())
        content_type = shown.extra.data.split(b"Content-Type: ")[1].split(b"\r\n")[0]
        if content_type == b"message/cpim":
            message = unwrap_cpim(shown.body)
            assert message.body == body and NameAddr.parse(message.from_).uri == sender
        elif shown.from_display:
            parsed = NameAddr.parse(shown.from_display + "<sip:f@h>")
            assert parsed.display == "".join(c for c in name if c >= " " and c != "\x7f")
            assert shown.body == body
        else:
            assert shown.body == f"{name}: ".encode() + body
