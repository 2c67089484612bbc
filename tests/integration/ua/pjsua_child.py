"""One PJSIP user agent (pjsua2) in its own process, driven by JSON lines.

Run as `python pjsua_child.py --ip 127.0.0.1 --port 0 --transports udp,tcp --log FILE`.
Commands on stdin, one JSON object a line:
  {"cmd": "dial", "uri": "sip:..", "late_offer": false}   INVITE (late offer: no SDP)
  {"cmd": "message", "uri": "sip:..", "text": "..", "in_call": true}
  {"cmd": "hangup"}                                          BYE/CANCEL on every call
  {"cmd": "quit"}
Events on stdout, one JSON object a line: "ready", "call" (state, id, remote, reason,
status, media), "message" (from, contact, ctype, body), "transfer", "redirect", "replaced",
"incoming", "error".

PJSIP defaults are kept (codecs, Supported: replaces, 302 and REFER handling): the point
is to see what a stock PJSIP phone does. There is no sound card here, so the null
audio device is used. Every callback runs on this process's main thread
(threadCnt 0, libHandleEvents polled), so the JSON writer needs no lock.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from typing import Any

import pjsua2 as pj

MEDIA_STATUS = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "held locally",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "held by remote",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}
STATE = {
    pj.PJSIP_INV_STATE_NULL: "null",
    pj.PJSIP_INV_STATE_CALLING: "calling",
    pj.PJSIP_INV_STATE_INCOMING: "incoming",
    pj.PJSIP_INV_STATE_EARLY: "early",
    pj.PJSIP_INV_STATE_CONNECTING: "connecting",
    pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
    pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected",
}


def emit(event: str, **fields: Any) -> None:
    """One event line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Phone(pj.Call):  # type: ignore[misc]
    """A call that reports its state changes; kept alive in Agent.calls."""

    def __init__(self, agent: Agent, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(agent, call_id)
        self.agent = agent
        agent.calls.append(self)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        emit(
            "call",
            id=info.id,
            state=STATE.get(info.state, str(info.state)),
            remote=info.remoteUri,
            status=info.lastStatusCode,
            reason=info.lastReason,
        )

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        statuses = [MEDIA_STATUS.get(m.status, str(m.status)) for m in info.media]
        emit("media", id=info.id, media=statuses)

    def onCallRedirected(self, prm: pj.OnCallRedirectedParam) -> int:
        emit("redirect", id=self.getId(), target=prm.targetUri)
        return int(pj.PJSIP_REDIRECT_ACCEPT)  # what pjsua's own app does by default

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        emit("transfer", id=self.getId(), target=prm.dstUri, status=prm.statusCode)
        prm.newCall = Phone(self.agent)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        emit("transfer_status", id=self.getId(), status=prm.statusCode, final=prm.finalNotify)

    def onCallReplaced(self, prm: pj.OnCallReplacedParam) -> None:
        emit("replaced", id=self.getId(), new_id=prm.newCallId)
        prm.newCall = Phone(self.agent, prm.newCallId)

    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:
        self.agent.report_message(prm)


class Agent(pj.Account):  # type: ignore[misc]
    """The account (no registration) that sends and receives for this phone."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Phone] = []  # every call ever made or received, kept alive
        self.buddies: list[pj.Buddy] = []  # out-of-dialog message targets, kept alive

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Phone(self, prm.callId)
        info = call.getInfo()
        emit("incoming", id=info.id, remote=info.remoteUri)
        answer = pj.CallOpParam()
        answer.statusCode = 180  # rings, as a phone does; the test decides
        call.answer(answer)

    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:
        self.report_message(prm)

    def report_message(self, prm: pj.OnInstantMessageParam) -> None:
        emit(
            "message",
            **{"from": prm.fromUri},
            contact=prm.contactUri,
            ctype=prm.contentType,
            body=prm.msgBody,
            source=prm.rdata.srcAddress,
        )

    def live(self) -> list[Phone]:
        out = []
        for call in self.calls:
            try:
                if call.isActive():
                    out.append(call)
            except pj.Error:
                continue
        return out

    def run(self, command: dict[str, Any]) -> None:
        if command["cmd"] == "dial":
            call = Phone(self)
            op = pj.CallOpParam(True)
            if command.get("late_offer"):
                op.opt.flag |= pj.PJSUA_CALL_NO_SDP_OFFER
            call.makeCall(command["uri"], op)
        elif command["cmd"] == "message":
            send = pj.SendInstantMessageParam()
            send.content = command["text"]
            live = self.live()
            if command.get("in_call", True) and live:
                live[-1].sendInstantMessage(send)
            else:
                buddy_cfg = pj.BuddyConfig()
                buddy_cfg.uri = command["uri"]
                buddy = pj.Buddy()
                buddy.create(self, buddy_cfg)
                buddy.sendInstantMessage(send)
                self.buddies.append(buddy)
        elif command["cmd"] == "hangup":
            for call in self.live():
                call.hangup(pj.CallOpParam(True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transports", default="udp,tcp")
    parser.add_argument("--user", default="pj")
    parser.add_argument("--display", default="")
    parser.add_argument("--domain", default="", help="AOR host (default: the bound ip:port)")
    parser.add_argument("--password", default="", help="digest password (docs/security.md)")
    parser.add_argument("--public", default="", help="host name for the Contact (default --ip)")
    parser.add_argument(
        "--tls-dir", default="", help="ca.crt, tls.crt, tls.key for the tls transport"
    )
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.filename = args.log
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 0
    cfg.logConfig.msgLogging = 1
    cfg.medConfig.threadCnt = 0
    ep.libInit(cfg)
    ipv6 = ":" in args.ip
    kinds = {
        "udp": pj.PJSIP_TRANSPORT_UDP6 if ipv6 else pj.PJSIP_TRANSPORT_UDP,
        "tcp": pj.PJSIP_TRANSPORT_TCP6 if ipv6 else pj.PJSIP_TRANSPORT_TCP,
        "tls": pj.PJSIP_TRANSPORT_TLS6 if ipv6 else pj.PJSIP_TRANSPORT_TLS,
    }
    ports: dict[str, int] = {}
    for name in args.transports.split(","):
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = args.ip
        tcfg.publicAddress = args.ip
        tcfg.port = args.port
        if name == "tls":  # verifies the server's certificate against the test CA
            tcfg.tlsConfig.CaListFile = f"{args.tls_dir}/ca.crt"
            tcfg.tlsConfig.certFile = f"{args.tls_dir}/tls.crt"
            tcfg.tlsConfig.privKeyFile = f"{args.tls_dir}/tls.key"
            tcfg.tlsConfig.verifyServer = True
        tid = ep.transportCreate(kinds[name], tcfg)
        ports[name] = ep.transportGetInfo(tid).localName
    ep.libStart()
    ep.audDevManager().setNullDev()

    host = f"[{args.ip}]" if ipv6 else args.ip
    port = args.port
    acfg = pj.AccountConfig()
    name = f'"{args.display}" ' if args.display else ""
    acfg.idUri = f"{name}<sip:{args.user}@{args.domain or f'{host}:{port}'}>"
    if args.password:  # answers 401 challenges of any realm with PJSIP's own digest code
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.user, 0, args.password))
    only = "" if "udp" in ports else "tcp" if "tcp" in ports else "tls"
    acfg.sipConfig.contactUriParams = f";transport={only}" if only else ""
    if args.public:  # a host name PJSIP would not resolve for itself, e.g. x.invalid
        acfg.sipConfig.contactForced = f"<sip:{args.user}@{args.public}:{port}>"
    acfg.mediaConfig.transportConfig.boundAddress = args.ip
    agent = Agent()
    agent.create(acfg)

    commands: queue.Queue[dict[str, Any]] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put({"cmd": "quit"})

    threading.Thread(target=read_stdin, daemon=True).start()
    emit("ready", transports=ports, version=ep.libVersion().full)
    while True:
        ep.libHandleEvents(20)
        try:
            command = commands.get_nowait()
        except queue.Empty:
            continue
        if command["cmd"] == "quit":
            break
        try:
            agent.run(command)
        except pj.Error as exc:
            emit("error", cmd=command["cmd"], reason=exc.info())
    ep.hangupAllCalls()
    for _ in range(10):
        ep.libHandleEvents(20)
    emit("exit")
    agent.calls.clear()
    ep.libDestroy()


if __name__ == "__main__":
    main()
