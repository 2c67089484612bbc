"""The real phones the tests can start, and why one cannot run here."""

from __future__ import annotations

from pathlib import Path

from agent import Agent
from baresip_agent import BARESIP, BaresipAgent
from linphone_agent import LINPHONE, LinphoneAgent
from pjsua_agent import PjsuaAgent, pjsua_missing

KINDS: dict[str, type[Agent]] = {
    "pjsua2": PjsuaAgent,
    "baresip": BaresipAgent,
    "linphone": LinphoneAgent,
}


def binary_missing(path: str, package: str) -> str:
    """Why a UA binary cannot run here, or '' when it can."""
    if not Path(path).exists():
        return f"{path} not installed: apt-get install {package} (scripts/install-system-deps.sh)"
    return ""


def missing(kind: str) -> str:
    """Why UA `kind` cannot run on this machine, or '' when it can."""
    if kind == "pjsua2":
        return pjsua_missing()
    if kind == "baresip":
        return binary_missing(BARESIP, "baresip")
    return binary_missing(LINPHONE, "linphone-cli")
