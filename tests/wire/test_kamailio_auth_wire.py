"""Kamailio as an authenticating outbound proxy (issue 12 items 1 and 2): an agent
profile has ``outbound_proxy`` (Kamailio on a free loopback port) and ``auth``; every
INVITE voicegw sends to the agent carries the pre-loaded ``Route: <proxy;lr>`` and
goes to Kamailio, which demands digest auth (``proxy_challenge``, 407 with qop=auth)
and checks the answer itself (``pv_proxy_authenticate`` against the password in its
config) before it relays the INVITE to the agent (a sipp UAS) by its Request-URI,
record-routing (sipp's built-in UAS does not echo Record-Route in its 2xx, so the
dialog's ACK and BYE go to the agent directly). The right password is bridged; a wrong one is refused by Kamailio and the transfer fails
with status ``auth``. Asserted on Kamailio's log (one line per request) and the
agent's message log. Kamailio runs in the foreground, stopped by its PID."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from peers.caller import Caller
from peers.calls import _udp_free, read_sipp_messages
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port
from peers.sipp import SIPP

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(KAMAILIO is None, reason="kamailio not installed: run scripts/bootstrap"),
]

PASSWORD = "k4m-secret"

CONFIG = """#!KAMAILIO
# An outbound proxy that authenticates initial INVITEs (407), then relays by R-URI.
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:@PORT@
alias="127.0.0.1:@PORT@"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
request_route {
    xlog("L_NOTICE", "KAM $rm from $si:$sp ruri=$ru route=[$hdr(Route)] auth=[$hdr(Proxy-Authorization)]\\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK") && t_check_trans()) { t_relay(); exit; }
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
    if (is_method("INVITE")) {
        if (!pv_proxy_authenticate("voicegw.test", "@PASSWORD@", "0")) {
            xlog("L_NOTICE", "KAM challenge $rm cseq=$cs\\n");
            proxy_challenge("voicegw.test", "1");
            exit;
        }
        xlog("L_NOTICE", "KAM authenticated $rm user=$au cseq=$cs\\n");
        consume_credentials();
    }
    loose_route();  # the pre-loaded Route naming us (RFC 3261 16.4)
    record_route();
    if (!t_relay()) { sl_reply_error(); }
}
"""


class Kamailio:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.cfg = workdir / "kamailio.cfg"
        self.cfg.write_text(CONFIG.replace("@PORT@", str(self.port)).replace("@PASSWORD@", PASSWORD))
        self.log = workdir / "kamailio.log"
        self.pidfile = workdir / "kamailio.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Kamailio:
        check = subprocess.run([KAMAILIO, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=20)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([KAMAILIO, "-f", str(self.cfg), "-P", str(self.pidfile), "-DD", "-E"],
                                     stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        if not wait_until(lambda: not _udp_free(self.port) or self.proc.poll() is not None, 10.0):
            raise AssertionError(f"kamailio did not listen:\n{self.text()}")
        assert self.proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self, what: str) -> list[str]:
        return [line for line in self.text().splitlines() if f"KAM {what}" in line]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def events(daemon: DaemonProcess, name: str) -> list[dict]:
    return [e for e in daemon.events() if e.get("event") == name]


def through_kamailio(tmp_path: Path, password: str) -> tuple[DaemonProcess, Kamailio, Path, dict]:
    """One call transferred at once to a sipp agent behind Kamailio; the transfer's outcome."""
    proxy = Kamailio(tmp_path).start()
    port, media = free_port(), free_port()
    media -= media % 2
    agent_log = tmp_path / "agent_msgs.log"
    agent = subprocess.Popen(
        [SIPP, "-p", str(port), "-i", "127.0.0.1", "-mp", str(media), "-m", "1", "-nostdin", "-sn", "uas",
         "-trace_msg", "-message_file", str(agent_log), "-timeout", "30s"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "flows").mkdir()
    (tmp_path / "profiles" / "agent-x.yaml").write_text(yaml.safe_dump({
        "kind": "agent", "uri": f"sip:agent@127.0.0.1:{port}", "outbound_proxy": f"sip:127.0.0.1:{proxy.port}",
        "auth": {"username": "agent7", "password": password}}))
    (tmp_path / "flows" / "main.yaml").write_text(yaml.safe_dump({"start": "to_agent", "nodes": {
        "to_agent": {"type": "agent_transfer", "target": "agent-x", "fallback": {
            "rules": [{"match": "auth", "action": "goto", "node": "wait"}], "default": {"action": "end"}}},
        "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 30, "on_timeout": "bye"},
        "bye": {"type": "hangup"}}}))
    config = tmp_path / "voicegw.yaml"
    config.write_text(yaml.safe_dump({"profiles_dir": str(tmp_path / "profiles"),
                                      "flows_dir": str(tmp_path / "flows"), "default_flow": "main"}))
    daemon = DaemonProcess("127.0.0.1", None, "--config", str(config))
    caller = None
    try:
        daemon.start()
        caller = Caller(daemon.address)
        assert caller.invite().status == 200
        assert wait_until(lambda: events(daemon, "transfer.succeeded") or events(daemon, "transfer.failed"), 20), \
            "\n".join(daemon.lines[-20:]) + proxy.text()[-2000:]
        done = (events(daemon, "transfer.succeeded") or events(daemon, "transfer.failed"))[0]
        if done["event"] == "transfer.succeeded":
            assert caller.bye().status == 200
            assert agent.wait(20) == 0, agent.stderr.read() if agent.stderr else ""
        else:
            assert not caller.got_request("BYE"), "a failed transfer keeps the caller"
            assert caller.bye().status == 200
    finally:
        if caller is not None:
            caller.close()
        agent.kill()
        proxy.stop()
        daemon.terminate()
    assert password not in "\n".join(daemon.lines)
    return daemon, proxy, agent_log, done


def test_kamailio_challenges_and_relays_the_authenticated_invite_to_the_agent(tmp_path: Path) -> None:
    daemon, proxy, agent_log, done = through_kamailio(tmp_path, PASSWORD)
    assert done["event"] == "transfer.succeeded", (done, proxy.text()[-3000:])
    invites = proxy.lines("INVITE from")
    assert len(invites) == 2, proxy.text()
    assert f"route=[<sip:127.0.0.1:{proxy.port};lr>]" in invites[0], invites[0]  # the pre-loaded Route
    assert "auth=[<null>]" in invites[0], invites[0]
    assert 'username="agent7"' in invites[1] and 'realm="voicegw.test"' in invites[1], invites[1]
    (challenged,) = proxy.lines("challenge INVITE")
    (authenticated,) = proxy.lines("authenticated INVITE")
    assert "cseq=1" in challenged and "user=agent7 cseq=2" in authenticated, (challenged, authenticated)
    got = [m for m in read_sipp_messages(agent_log) if m.direction == "in" and m.method == "INVITE"]
    assert len(got) == 1 and got[0].header("proxy-authorization") is None, "Kamailio consumed the credentials"


def test_a_wrong_password_is_refused_by_kamailio_and_fails_with_auth(tmp_path: Path) -> None:
    daemon, proxy, agent_log, done = through_kamailio(tmp_path, "not-the-password")
    assert (done["event"], done["status"]) == ("transfer.failed", "auth"), done
    assert len(proxy.lines("challenge INVITE")) == 2, proxy.text()
    assert not proxy.lines("authenticated"), proxy.text()
    assert not [m for m in read_sipp_messages(agent_log) if m.method == "INVITE"], "nothing reached the agent"
