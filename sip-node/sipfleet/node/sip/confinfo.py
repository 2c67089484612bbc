"""conference-info documents (RFC 4575) for the conference event package."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

CONFERENCE_INFO_TYPE = "application/conference-info+xml"
_NS = "urn:ietf:params:xml:ns:conference-info"


@dataclass
class Endpoint:
    entity: str
    status: str = "connected"  # pending, dialing-out, alerting, on-hold, connected, disconnected...
    state: str = "full"


@dataclass
class User:
    """A member; `state` is "full", "partial" or "deleted" (partial notifications)."""

    entity: str
    display_text: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    state: str = "full"


def conference_info(
    entity: str,
    version: int,
    users: list[User],
    *,
    state: str = "full",
    user_count: int | None = None,
    subject: str | None = None,
) -> bytes:
    """The XML document. With state="partial", list only the users that
    changed (removed ones with state="deleted"); `user_count` defaults to
    len(users) for a full document and is omitted for a partial one."""
    root = ET.Element("conference-info", {"xmlns": _NS, "entity": entity})
    root.set("state", state)
    root.set("version", str(version))
    if subject is not None:
        description = ET.SubElement(root, "conference-description")
        ET.SubElement(description, "subject").text = subject
    if user_count is None and state == "full":
        user_count = len(users)
    if user_count is not None:
        conf_state = ET.SubElement(root, "conference-state")
        ET.SubElement(conf_state, "user-count").text = str(user_count)
    users_el = ET.SubElement(root, "users")
    for user in users:
        user_el = ET.SubElement(users_el, "user", {"entity": user.entity, "state": user.state})
        if user.display_text is not None:
            ET.SubElement(user_el, "display-text").text = user.display_text
        for endpoint in user.endpoints:
            ep = ET.SubElement(user_el, "endpoint", {"entity": endpoint.entity})
            ep.set("state", endpoint.state)
            ET.SubElement(ep, "status").text = endpoint.status
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
