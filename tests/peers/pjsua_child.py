"""The PJSIP user agent process that :mod:`peers.pjsua` drives (one per UA).

Run as ``python pjsua_child.py CONFIG_JSON``. It speaks JSON lines: commands come on
stdin (``{"id": 7, "op": "call", "args": {...}}``), answers (``{"id": 7, "ok": true,
"result": ...}``) and events (``{"event": "state", ...}``) go out on the stdout it was
started with; everything PJSIP prints goes to stderr and to the log file instead, so
the protocol stream stays clean.

PJSUA runs the way pjsua2 wants it in Python (tests/../shared/peers/README.md):
``threadCnt = 0`` and ``mainThreadOnly = True``, so every callback runs on this one
thread, inside ``libHandleEvents`` which the loop below pumps every 10 ms between
commands. Callbacks only record and queue; actions that change a call (answer after
a delay, BYE after a transfer's final NOTIFY) run from the loop, outside PJSIP's
callbacks. Every SIP message PJSIP sends or receives reaches the log writer (level 4
"RX/TX ... --end msg--" entries) and is sent to the parent as a ``sip`` event, so
tests assert on what crossed the wire.

The process ends on a ``quit`` command, when its stdin closes (the test process
died), or after ``max_life`` seconds, whichever comes first.
"""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

SIP_LOG = re.compile(r"(RX|TX) \d+ bytes .*? (?:from|to) (\w+) (\S+?):\r?\n(.*)\r?\n--end msg--",
                     re.DOTALL)


class Proto:
    """The JSON-lines channel to the parent (a private dup of the original stdout)."""

    def __init__(self) -> None:
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # whatever C code prints from now on goes to stderr
        self.inbuf = b""

    def emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def commands(self) -> list[dict[str, Any]] | None:
        """Complete command lines waiting on stdin (None: stdin closed)."""
        ready, _, _ = select.select([0], [], [], 0)
        if not ready:
            return []
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        self.inbuf += chunk
        *lines, self.inbuf = self.inbuf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


DROPPED = re.compile(r"Dropping \d+ bytes packet from|Error processing \d+ bytes packet from")
"""sip_transport.c's words for an incoming message it could not parse and threw away."""

STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL", pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING", pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING", pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
"""The INVITE session states by name (PJSIP's own stateText abbreviates one)."""

PROTO: Proto
PENDING: list[tuple[float, Callable[[], None]]] = []
"""(when, action) run from the main loop, outside PJSIP's callbacks."""


def later(action: Callable[[], None], delay: float = 0.0) -> None:
    PENDING.append((time.monotonic() + delay, action))


class Writer(pj.LogWriter):
    """PJSIP's log to a file; SIP messages also to the parent as ``sip`` events."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (lives as long as the process)

    def write(self, entry: pj.LogEntry) -> None:
        msg = entry.msg
        self.file.write(msg if msg.endswith("\n") else msg + "\n")
        self.file.flush()
        if DROPPED.search(msg):  # a message PJSIP could not parse: the sender's bug
            PROTO.emit({"event": "dropped", "text": msg.strip()[:2000]})
        found = SIP_LOG.search(msg)
        if found:
            direction = "in" if found.group(1) == "RX" else "out"
            PROTO.emit({"event": "sip", "dir": direction, "transport": found.group(2),
                        "peer": found.group(3), "data": found.group(4), "t": time.monotonic()})


class UA:
    """The endpoint, its one transport and one account, the calls by our ids."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.calls: dict[str, Call] = {}
        self.counter = 0
        self.tones: dict[str, pj.ToneGenerator] = {}
        self.recorders: dict[str, tuple[str, pj.AudioMediaRecorder, str]] = {}
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.userAgent = f"voicegw-test-pjsua/{cfg['name']}"
        ep_cfg.uaConfig.maxCalls = 8
        ep_cfg.logConfig.level = 5
        ep_cfg.logConfig.consoleLevel = 5  # what reaches the writer
        ep_cfg.logConfig.msgLogging = True
        self.writer = Writer(cfg["log"])
        ep_cfg.logConfig.writer = self.writer
        # the null device makes silence, which VAD would suppress: count every packet
        ep_cfg.medConfig.noVad = True
        ep_cfg.medConfig.clockRate = 8000
        ep_cfg.medConfig.sndClockRate = 8000
        ep_cfg.medConfig.ecTailLen = 0
        self.ep.libInit(ep_cfg)

        tcfg = pj.TransportConfig()
        tcfg.boundAddress = cfg["host"]
        tcfg.publicAddress = cfg["host"]
        tcfg.port = cfg.get("port", 0)
        tls = cfg.get("tls")
        if tls:
            tcfg.tlsConfig.CaListFile = tls.get("ca", "")
            tcfg.tlsConfig.certFile = tls.get("cert", "")
            tcfg.tlsConfig.privKeyFile = tls.get("key", "")
            tcfg.tlsConfig.verifyServer = bool(tls.get("verify", False))
            tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            kind = pj.PJSIP_TRANSPORT_TLS
        elif cfg.get("transport") == "tcp":
            kind = pj.PJSIP_TRANSPORT_TCP
        else:
            kind = pj.PJSIP_TRANSPORT_UDP
        self.tid = self.ep.transportCreate(kind, tcfg)
        self.ep.audDevManager().setNullDev()
        self.ep.libStart()
        self.port = int(self.ep.transportGetInfo(self.tid).localName.rsplit(":", 1)[1])
        self._codecs()
        self.account = Account(self)
        self.account.create(self._account_config())

    def _codecs(self) -> None:
        """G.711 only (what voicegw relays), PCMU first; telephone-event stays on."""
        wanted = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, wanted.get(codec.codecId, 0))

    def _account_config(self) -> pj.AccountConfig:
        cfg = self.cfg
        acc = pj.AccountConfig()
        scheme = "sips" if cfg.get("tls") and cfg.get("sips") else "sip"
        params = ";transport=tls" if cfg.get("tls") else (";transport=tcp" if cfg.get("transport") == "tcp" else "")
        reg = cfg.get("register")
        if reg:
            acc.idUri = f"{scheme}:{reg['user']}@{reg['domain']}"
            acc.regConfig.registrarUri = reg["registrar"]
            acc.regConfig.registerOnAdd = True
            acc.regConfig.timeoutSec = int(reg.get("expires", 300))
            acc.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", reg.get("realm", "*"), reg.get("auth_user") or reg["user"],
                                0, reg["password"]))
            if reg.get("proxy"):
                acc.sipConfig.proxies.append(reg["proxy"])
        else:
            acc.idUri = f"{scheme}:{cfg['user']}@{cfg['host']}:{self.port}{params}"
            acc.regConfig.registerOnAdd = False
        if cfg.get("credentials"):  # answers a 401/407 to any request (RFC 3261 22.2)
            user, password = cfg["credentials"]
            acc.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        acc.sipConfig.transportId = self.tid
        acc.mediaConfig.transportConfig.boundAddress = cfg["host"]
        acc.mediaConfig.transportConfig.publicAddress = cfg["host"]
        acc.mediaConfig.transportConfig.port = cfg.get("rtp_port", 0)
        acc.mediaConfig.transportConfig.portRange = 100
        srtp = cfg.get("srtp")
        acc.mediaConfig.srtpUse = {None: pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                                   "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[srtp]
        acc.mediaConfig.srtpSecureSignaling = int(cfg.get("srtp_secure_signaling", 0))
        if srtp:
            acc.mediaConfig.srtpOpt.keyings.clear()
            acc.mediaConfig.srtpOpt.keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        acc.natConfig.iceEnabled = False
        acc.natConfig.sipOutboundUse = 0
        acc.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        return acc

    # ------------------------------------------------------------------ calls by id
    def adopt(self, call: Call) -> str:
        self.counter += 1
        call.key = f"c{self.counter}"
        self.calls[call.key] = call
        return call.key

    def call(self, key: str) -> Call:
        try:
            return self.calls[key]
        except KeyError:
            raise ValueError(f"no call {key!r}") from None

    def shutdown(self) -> None:
        """BYE (or CANCEL) what is still up, wait for the answers (at most 1 s), then
        destroy the endpoint without more network traffic (no 1 s unregistration wait)."""
        for key in list(self.recorders):
            self.stop_record(key)
        try:
            self.ep.hangupAllCalls()
        except pj.Error:
            pass
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            if not any(call.alive() for call in self.calls.values()):
                break
        if self.cfg.get("register"):
            try:
                self.account.setRegistration(False)
            except pj.Error:
                pass
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                self.ep.libHandleEvents(10)
        self.tones.clear()
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)

    # ------------------------------------------------------------------ media
    def attach(self, call: Call) -> None:
        """(Re)connect the call's tone and recorder after a media change."""
        media = call.audio()
        if media is None:
            return
        tone = self.tones.get(call.key)
        if tone is not None:
            tone.startTransmit(media)
        rec = self.recorders.get(call.key)
        if rec is not None:
            media.startTransmit(rec[1])

    def set_tone(self, key: str, hz: float | None, level: int = 8000) -> None:
        call = self.call(key)
        old = self.tones.pop(key, None)
        if old is not None:
            media = call.audio()
            if media is not None:
                try:
                    old.stopTransmit(media)
                except pj.Error:
                    pass
            old.stop()
        if hz:
            gen = pj.ToneGenerator()
            gen.createToneGenerator(8000, 1)
            desc = pj.ToneDesc()
            desc.freq1 = int(hz)
            desc.freq2 = 0
            desc.on_msec = 10000
            desc.off_msec = 0
            desc.volume = level
            tones = pj.ToneDescVector()
            tones.append(desc)
            gen.play(tones, True)
            self.tones[key] = gen
            self.attach(call)

    def start_record(self, key: str, path: str) -> None:
        call = self.call(key)
        self.stop_record(key)
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(path)
        self.recorders[key] = (path, rec, key)
        media = call.audio()
        if media is not None:
            media.startTransmit(rec)

    def stop_record(self, key: str) -> str | None:
        entry = self.recorders.pop(key, None)
        if entry is None:
            return None
        path, rec, _ = entry
        del entry
        call = self.calls.get(key)
        media = call.audio() if call is not None else None
        if media is not None:
            try:
                media.stopTransmit(rec)
            except pj.Error:
                pass
        del rec  # destroying the recorder flushes the file and writes the WAV sizes ...
        self._wait_wav(path)
        return path

    def _wait_wav(self, path: str, timeout: float = 2.0) -> None:
        """... once the conference bridge has really removed its port, which it does
        from its own clock thread a few ms later: wait until the RIFF size is written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path, "rb") as wav:
                    head = wav.read(8)
                size = os.path.getsize(path)
            except OSError:
                size, head = 0, b""
            if len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8:
                return
            self.ep.libHandleEvents(5)


UA_: UA


class Account(pj.Account):
    def __init__(self, ua: UA) -> None:
        super().__init__()
        self.ua = ua

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        PROTO.emit({"event": "reg", "code": prm.code, "reason": prm.reason,
                    "expiration": prm.expiration})

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId)
        key = self.ua.adopt(call)
        PROTO.emit({"event": "incoming", "call": key, "data": prm.rdata.wholeMsg,
                    "source": prm.rdata.srcAddress})
        mode = self.ua.cfg.get("incoming", "answer")
        if mode == "busy":
            call.respond(int(self.ua.cfg.get("busy_status", 486)))
            return
        call.respond(180)
        if mode == "answer":
            later(lambda: call.respond(200), float(self.ua.cfg.get("answer_delay", 0.0)))
        # "ignore" rings until CANCEL; "manual" waits for an answer command


class Call(pj.Call):
    key = ""

    def __init__(self, acc: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.acc = acc
        self.ua = acc.ua

    def respond(self, status: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = status
        try:
            self.answer(prm)
        except pj.Error as exc:  # e.g. the call was cancelled meanwhile
            PROTO.emit({"event": "error", "call": self.key, "op": f"answer {status}",
                        "error": exc.info()})

    def alive(self) -> bool:
        try:
            return bool(self.isActive())
        except pj.Error:
            return False

    def audio(self) -> pj.AudioMedia | None:
        try:
            info = self.getInfo()
        except pj.Error:
            return None
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            ):
                try:
                    return self.getAudioMedia(media.index)
                except pj.Error:
                    return None
        return None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        PROTO.emit({"event": "state", "call": self.key, "state": STATES.get(info.state, "?"),
                    "status": info.lastStatusCode, "reason": info.lastReason,
                    "remote": info.remoteUri, "call_id": info.callIdString})
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            ua = self.ua
            key = self.key

            def forget() -> None:
                ua.stop_record(key)
                ua.tones.pop(key, None)

            later(forget)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        out = []
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            item: dict[str, Any] = {"index": media.index, "status": int(media.status),
                                    "dir": int(media.dir)}
            try:
                stream = self.getStreamInfo(media.index)
                item.update(codec=stream.codecName, remote=stream.remoteRtpAddress,
                            proto=int(stream.proto))
            except pj.Error:
                pass
            try:
                tp = self.getMedTransportInfo(media.index)
                item.update(local=tp.localRtpName, source=tp.srcRtpName)
            except pj.Error:
                pass
            out.append(item)
        PROTO.emit({"event": "media", "call": self.key, "media": out})
        if self.key not in self.ua.tones and self.ua.cfg.get("tone_hz"):
            self.ua.set_tone(self.key, self.ua.cfg["tone_hz"])
        else:
            self.ua.attach(self)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        PROTO.emit({"event": "dtmf", "call": self.key, "digit": prm.digit,
                    "method": int(prm.method), "t": time.monotonic()})

    # --- REFER, the referrer's side (RFC 3515 section 2.4.5: NOTIFY sipfrags)
    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        PROTO.emit({"event": "xfer_status", "call": self.key, "status": prm.statusCode,
                    "reason": prm.reason, "final": bool(prm.finalNotify)})
        prm.cont = True
        if prm.finalNotify and 200 <= prm.statusCode < 300 and self.ua.cfg.get("bye_after_transfer", True):
            # at once, from the callback (as PJSIP's own pjsua app does): the referrer's
            # BYE leaves before the referee, which also ends the dialog after its final
            # NOTIFY, has the 200 to that NOTIFY (RFC 5589 section 6.1: either may BYE)
            try:
                self.hangup(pj.CallOpParam())
            except pj.Error as exc:
                PROTO.emit({"event": "error", "call": self.key, "op": "bye", "error": exc.info()})

    # --- REFER, the transferee's side: PJSIP's own handling makes the new call
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        accept = self.ua.cfg.get("accept_transfer", 202)
        if accept != 202:
            prm.statusCode = int(accept)
            PROTO.emit({"event": "xfer_request", "call": self.key, "target": prm.dstUri,
                        "status": int(accept), "new_call": None})
            return
        new = Call(self.acc)
        key = self.ua.adopt(new)
        prm.newCall = new
        PROTO.emit({"event": "xfer_request", "call": self.key, "target": prm.dstUri,
                    "status": 202, "new_call": key})

    # --- INVITE with Replaces (RFC 3891) arriving for this call
    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        PROTO.emit({"event": "replace_request", "call": self.key, "data": prm.rdata.wholeMsg})

    def onCallReplaced(self, prm: pj.OnCallReplacedParam) -> None:
        new = Call(self.acc, prm.newCallId)
        key = self.ua.adopt(new)
        prm.newCall = new
        PROTO.emit({"event": "replaced", "call": self.key, "new_call": key})


# --------------------------------------------------------------------------- commands
def _opts(args: dict[str, Any]) -> pj.CallOpParam:
    prm = pj.CallOpParam(True)
    for name, value in (args.get("headers") or {}).items():
        header = pj.SipHeader()
        header.hName = name
        header.hValue = str(value)
        prm.txOption.headers.append(header)
    return prm


def op_call(ua: UA, args: dict[str, Any]) -> str:
    call = Call(ua.account)
    key = ua.adopt(call)
    prm = _opts(args)
    prm.opt.audioCount = 1
    prm.opt.videoCount = 0
    call.makeCall(args["uri"], prm)
    return key


def op_answer(ua: UA, args: dict[str, Any]) -> None:
    ua.call(args["call"]).respond(int(args.get("status", 200)))


def op_hangup(ua: UA, args: dict[str, Any]) -> None:
    prm = _opts(args)
    if args.get("status"):
        prm.statusCode = int(args["status"])
    ua.call(args["call"]).hangup(prm)


def op_hold(ua: UA, args: dict[str, Any]) -> None:
    ua.call(args["call"]).setHold(_opts(args))


def op_unhold(ua: UA, args: dict[str, Any]) -> None:
    prm = _opts(args)
    prm.opt.flag = pj.PJSUA_CALL_UNHOLD
    ua.call(args["call"]).reinvite(prm)


def op_dtmf(ua: UA, args: dict[str, Any]) -> None:
    """RFC 4733 events in the RTP stream (PJSIP's "RFC 2833" method)."""
    prm = pj.CallSendDtmfParam()
    prm.digits = args["digits"]
    prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
    prm.duration = int(args.get("duration", 160))
    ua.call(args["call"]).sendDtmf(prm)


def op_tone(ua: UA, args: dict[str, Any]) -> None:
    ua.set_tone(args["call"], args.get("hz"), int(args.get("level", 8000)))


def op_record_start(ua: UA, args: dict[str, Any]) -> None:
    ua.start_record(args["call"], args["path"])


def op_record_stop(ua: UA, args: dict[str, Any]) -> str | None:
    return ua.stop_record(args["call"])


def op_refer(ua: UA, args: dict[str, Any]) -> None:
    ua.call(args["call"]).xfer(args["target"], _opts(args))


def op_refer_replaces(ua: UA, args: dict[str, Any]) -> None:
    ua.call(args["call"]).xferReplaces(ua.call(args["other"]), _opts(args))


def op_info(ua: UA, args: dict[str, Any]) -> dict[str, Any]:
    call = ua.call(args["call"])
    info = call.getInfo()
    out: dict[str, Any] = {"state": STATES.get(info.state, "?"), "status": info.lastStatusCode,
                           "call_id": info.callIdString, "remote": info.remoteUri,
                           "local": info.localUri, "role": int(info.role)}
    stats = []
    for media in info.media:
        if media.type != pj.PJMEDIA_TYPE_AUDIO:
            continue
        try:
            stat = call.getStreamStat(media.index)
            stats.append({"rx": stat.rtcp.rxStat.pkt, "tx": stat.rtcp.txStat.pkt})
        except pj.Error:
            stats.append({})
    out["streams"] = stats
    return out


def op_set(ua: UA, args: dict[str, Any]) -> None:
    """Change the UA's behaviour from now on (incoming mode, answer delay, ...)."""
    ua.cfg.update(args)


OPS: dict[str, Callable[[UA, dict[str, Any]], Any]] = {
    name[3:]: fn for name, fn in globals().items() if name.startswith("op_")
}


def main() -> int:
    global PROTO
    cfg = json.loads(sys.argv[1])
    PROTO = Proto()
    ua = UA(cfg)
    PROTO.emit({"event": "ready", "port": ua.port, "uri": ua.account.getInfo().uri,
                "pid": os.getpid()})
    deadline = time.monotonic() + float(cfg.get("max_life", 600))
    while time.monotonic() < deadline:
        ua.ep.libHandleEvents(10)
        run_due()
        commands = PROTO.commands()
        if commands is None:  # the test process is gone
            break
        for cmd in commands:
            if cmd.get("op") == "quit":
                PROTO.emit({"id": cmd.get("id"), "ok": True, "result": None})
                return _finish(ua)
            run_command(ua, cmd)
    return _finish(ua)


def run_due() -> None:
    now = time.monotonic()
    for item in [item for item in PENDING if item[0] <= now]:
        PENDING.remove(item)
        try:
            item[1]()
        except pj.Error as exc:
            PROTO.emit({"event": "error", "op": "later", "error": exc.info()})


def run_command(ua: UA, cmd: dict[str, Any]) -> None:
    handler = OPS.get(cmd.get("op", ""))
    try:
        if handler is None:
            raise ValueError(f"unknown op {cmd.get('op')!r}")
        result = handler(ua, cmd.get("args") or {})
        PROTO.emit({"id": cmd.get("id"), "ok": True, "result": result})
    except (pj.Error, ValueError, KeyError, TypeError) as exc:
        text = exc.info() if isinstance(exc, pj.Error) else f"{type(exc).__name__}: {exc}"
        PROTO.emit({"id": cmd.get("id"), "ok": False, "error": text})


def _finish(ua: UA) -> int:
    ua.shutdown()
    PROTO.emit({"event": "stopped"})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # no interpreter teardown: the Call objects' destructors would call into PJSUA after
    # libDestroy (pjsua_call_set_user_data asserts on it)
    os._exit(code)
