"""A PJSIP phone (pjsua2) with digest credentials, in its own process, for the auth tests.

`python auth_phone.py --group URI --user U --password P [--send TEXT] [--seconds S]`
joins the group (INVITE, answering 401 challenges with PJSIP's own digest code),
optionally sends one group MESSAGE once joined, stays `seconds`, hangs up and
exits. Events go to stdout as JSON lines: {"event": "call", "state", "status"},
{"event": "sent", "status"}, {"event": "received", "from", "body"}.
Every callback runs on the main thread (threadCnt 0, libHandleEvents polled).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pjsua2 as pj


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Account(pj.Account):  # type: ignore[misc]
    def onInstantMessage(self, prm: Any) -> None:
        emit("received", **{"from": prm.fromUri, "body": prm.msgBody})

    def onInstantMessageStatus(self, prm: Any) -> None:
        emit("sent", status=prm.code)


class Call(pj.Call):  # type: ignore[misc]
    def onInstantMessage(self, prm: Any) -> None:  # in the dialog: how the group delivers
        emit("received", **{"from": prm.fromUri, "body": prm.msgBody})

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        emit("call", state=info.stateText, status=info.lastStatusCode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--domain", default="example.com")
    parser.add_argument("--send", default="")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 3
    config.logConfig.consoleLevel = 0
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.audDevManager().setNullDev()
    endpoint.libStart()

    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{args.user}@{args.domain}"
    account_config.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", args.user, 0, args.password)
    )
    account = Account()
    account.create(account_config)
    call = Call(account)
    call.makeCall(args.group, pj.CallOpParam(True))

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            endpoint.libHandleEvents(20)

    pump(min(2.0, args.seconds))
    if args.send and call.isActive():
        buddy = pj.Buddy()
        buddy_config = pj.BuddyConfig()
        buddy_config.uri = args.group
        buddy.create(account, buddy_config)
        message = pj.SendInstantMessageParam()
        message.content = args.send
        buddy.sendInstantMessage(message)
    pump(max(0.0, args.seconds - 2.0))
    if call.isActive():
        call.hangup(pj.CallOpParam(True))
        pump(1.0)
    emit("done")
    endpoint.libDestroy()


if __name__ == "__main__":
    main()
