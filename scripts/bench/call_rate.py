#!/usr/bin/env python3
"""Calls per second through ``voicegw run`` (B2BUA to a bot), through Kamailio, and
through Asterisk and FreeSWITCH (real B2BUAs).

sipp UAC -> voicegw (--bot-uri) -> sipp UAS, at rising rates, each rate for a few
seconds of short calls (INVITE, 200, ACK, hold, BYE). Two modes:

- ``sig``: signalling only (tests/peers/scenarios/b2bua_uac_bench.xml).
- ``rtp``: the caller plays a pcap of PCMU (20 ms packets, made by this script) after
  the ACK, the UAS echoes RTP (sipp ``-rtp_echo``); through voicegw every packet is
  relayed twice (caller -> bot, echo -> caller). Through Kamailio media flows directly
  between the sipp peers (a proxy is not in the media path): that run measures
  Kamailio's signalling under the same sipp load, not a media relay.

``--target asterisk`` runs the same sipp peers through Asterisk 22 as a B2BUA
(chan_pjsip, Dial, media anchored in Asterisk like voicegw: scripts/bench/
asterisk-b2bua/), an optimised build (Asterisk's default -O3) that ``scripts/peers/build-asterisk
--optimised`` finds or builds (minutes, once). Asterisk relays RTP like voicegw, so its
rtp figures compare like with like.

``--target freeswitch`` does the same through FreeSWITCH 1.10 (mod_sofia, ``bridge``,
media anchored: the shipped test config with scripts/bench/freeswitch-b2bua/bench.xml as
its dialplan, the session-rate cap raised, log level warning, no SIP trace), the -O2
build that ``scripts/peers/build-freeswitch`` finds or builds.

The same scenario (1xx optional and unordered, shared/anchors/README.md) and rates are
run with Kamailio as a transaction-stateful proxy (``t_relay``, one UDP worker;
scripts/bench/kamailio-proxy.cfg) between the same sipp peers, for the ratio. Per
rate: calls attempted/successful/failed, setup time (INVITE -> 200, sipp ``rtd``) p50
and p99, CPU of the daemon (voicegw: its process; Kamailio: all its processes) in % of
one core, averaged over the sipp run. Prints a table, then one JSON line.

    .venv/bin/python scripts/bench/call_rate.py                 # default, about 4 minutes
    .venv/bin/python scripts/bench/call_rate.py --rates 100,200 --seconds 5 --modes sig
    .venv/bin/python scripts/bench/call_rate.py --no-kamailio
    .venv/bin/python scripts/bench/call_rate.py --target voicegw,asterisk
    .venv/bin/python scripts/bench/call_rate.py --target voicegw,freeswitch

Installs Kamailio with apt-get when it is missing (says so first). Loopback only; every
process started here is stopped here, by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from netutil import free_port, sipp_results, udp_taken, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "peers" / "scenarios"
KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio-proxy.cfg"
ASTERISK_CONF = Path(__file__).resolve().parent / "asterisk-b2bua"
FREESWITCH_DIALPLAN = Path(__file__).resolve().parent / "freeswitch-b2bua" / "bench.xml"
HOST = "127.0.0.1"
DEFAULT_RATES = (50, 100, 200, 300, 400)
TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- processes






def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Kamailio forks its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICKS


def udp_datagrams_in() -> int:
    """The host's UDP InDatagrams (/proc/net/snmp): every datagram delivered on loopback,
    SIP and RTP; its growth per call shows whether the media went where it should."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("InDatagrams")])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Server:
    """The system under test: voicegw or Kamailio, started in the foreground."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        command = getattr(self, "stop_command", None)
        if command and self.alive():  # Asterisk: its own clean shutdown
            subprocess.run(command, capture_output=True, timeout=20, check=False)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        code = stop_process(self.proc)
        cleanup = getattr(self, "cleanup", None)
        if cleanup is not None:
            cleanup()
        return code


def start_voicegw(work: Path, uas_port: int | None, rtp_ports: str = "20000-31999",
                  log_level: str = "info", max_calls: int | None = None,
                  config_text: str | None = None, cwd: Path = ROOT, timeout: float = 20) -> Server:
    """``voicegw run`` towards the UAS (none: the embedded default's demo flow);
    ``max_calls`` raises the guard's cap on calls up (default 1000) when the bench needs
    more; ``config_text`` replaces the config file written (default: no control API);
    ``cwd`` is where the daemon keeps its records (var/)."""
    port = free_port()
    log = work / "voicegw.log"
    # no control API: it listens on a fixed port that another daemon may hold
    config = work / "voicegw.yaml"
    config.write_text(config_text if config_text is not None else (
        "api:\n  enabled: false\n" + (f"guard:\n  max_calls: {max_calls}\n" if max_calls else "")))
    cmd = [sys.executable, "-m", "voicegw", "run", "--config", str(config),
           "--sip-host", HOST, "--sip-port", str(port),
           *(["--bot-uri", f"sip:bot@{HOST}:{uas_port}"] if uas_port else []), "--rtp-ports", rtp_ports,
           "--log-level", log_level]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=out, env=env)
    server = Server("voicegw", proc, port, log)
    if not wait_for(lambda: '"daemon.started"' in log.read_text(errors="replace") or not server.alive(), timeout):
        server.stop()
    if not server.alive():
        raise SystemExit("voicegw did not start:\n" + log.read_text(errors="replace")[-2000:])
    return server


def start_rtpengine(work: Path) -> tuple[subprocess.Popen, str]:
    """rtpengine in userspace (no kernel module), one thread, its own ng and DTMF ports and
    RTP range; and the ``media:`` section that points ``voicegw run`` at it."""
    binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
    ng, dtmf = free_port(), free_port()
    log = (work / "rtpengine.log").open("w")
    proc = subprocess.Popen(
        [binary, "--table=-1", f"--interface={HOST}", f"--listen-ng={HOST}:{ng}",
         f"--dtmf-log-dest={HOST}:{dtmf}", "--port-min=40000", "--port-max=59999", "--foreground",
         "--log-stderr", "-L", "4", "--num-threads=1", f"--pidfile={work / 'rtpengine.pid'}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit("rtpengine did not start:\n" + (work / "rtpengine.log").read_text()[-2000:])
    section = (f"media:\n  backend: rtpengine\n  rtpengine:\n    ng: {HOST}:{ng}\n"
               f"    dtmf_listen: {HOST}:{dtmf}\n    files: {work / 'rtpengine-files'}\n")
    return proc, section


def ensure_kamailio() -> str | None:
    found = shutil.which("kamailio") or (Path("/usr/sbin/kamailio").exists() and "/usr/sbin/kamailio")
    if found:
        return str(found)
    bootstrap = ROOT / "scripts" / "bootstrap"
    if "--bench" in bootstrap.read_text(errors="replace"):
        print("call_rate: kamailio missing: running scripts/bootstrap --bench", file=sys.stderr)
        subprocess.run(["bash", str(bootstrap), "--bench"], check=False)
    else:
        print("call_rate: kamailio missing: installing it with 'apt-get install -y kamailio'",
              file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run([*prefix, "apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "kamailio"], check=False, env=env)
    found = shutil.which("kamailio") or (Path("/usr/sbin/kamailio").exists() and "/usr/sbin/kamailio")
    return str(found) if found else None


def start_kamailio(binary: str, work: Path, uas_port: int) -> Server:
    port = free_port()
    cfg = work / "kamailio.cfg"
    text = KAMAILIO_CFG.read_text().replace("@PROXY_PORT@", str(port)).replace("@UAS_PORT@", str(uas_port))
    cfg.write_text(text)
    log = work / "kamailio.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, "-f", str(cfg), "-P", str(work / "kamailio.pid"), "-DD", "-E",
                                 "-m", "256", "-M", "16"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Server("kamailio", proc, port, log)
    if not wait_for(lambda: udp_taken(port) or not server.alive(), 20) or not server.alive():
        server.stop()
        raise SystemExit("kamailio did not start:\n" + log.read_text(errors="replace")[-2000:])
    time.sleep(0.5)  # its workers fork after the bind
    return server


def ensure_asterisk() -> Path | None:
    """The prefix of an optimised Asterisk (found, or built from ../shared/peers)."""
    script = ROOT / "scripts" / "peers" / "build-asterisk"
    print("call_rate: looking for an optimised Asterisk (building one takes minutes)", file=sys.stderr)
    done = subprocess.run([str(script), "--optimised"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    prefix = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not prefix or not (Path(prefix) / "sbin" / "asterisk").exists():
        print("call_rate: no Asterisk: " + (done.stderr.strip()[-300:] or "none found"), file=sys.stderr)
        return None
    return Path(prefix)


def start_asterisk(prefix: Path, work: Path, uas_port: int) -> Server:
    """Asterisk in the foreground with the bench config, its own run directory."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="vg-bench-ast-", dir="/tmp"))  # socket path < 108 bytes
    values = {"RUN": str(run), "MODULES": str(prefix / "lib" / "asterisk" / "modules"),
              "SBIN": str(prefix / "sbin"), "SIP_PORT": str(port), "UAS_PORT": str(uas_port),
              "RTP_START": "20000", "RTP_END": "31999"}
    for sub in ("etc", "log", "run", "lib", "spool", "cache"):
        (run / sub).mkdir()
    for conf in ASTERISK_CONF.glob("*.conf"):
        text = conf.read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        (run / "etc" / conf.name).write_text(text)
    binary = prefix / "sbin" / "asterisk"
    conf = run / "etc" / "asterisk.conf"
    log = work / "asterisk.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(binary), "-C", str(conf), "-f", "-n"], cwd=run,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Server("asterisk", proc, port, log)

    def booted() -> bool:
        return subprocess.run([str(binary), "-C", str(conf), "-rx", "core waitfullybooted"],
                              capture_output=True, timeout=20, check=False).returncode == 0

    if not wait_for(lambda: not server.alive() or booted(), 60) or not server.alive():
        server.stop()
        raise SystemExit("asterisk did not start:\n" + log.read_text(errors="replace")[-2000:])
    server.cleanup = lambda: shutil.rmtree(run, ignore_errors=True)  # type: ignore[attr-defined]
    server.stop_command = [str(binary), "-C", str(conf), "-rx", "core stop now"]  # type: ignore[attr-defined]
    return server


def ensure_freeswitch() -> tuple[Path, Path] | None:
    """(binary, shipped test config) of FreeSWITCH (found, or built from ../shared/peers)."""
    script = ROOT / "scripts" / "peers" / "build-freeswitch"
    print("call_rate: looking for FreeSWITCH (building one takes minutes)", file=sys.stderr)
    done = subprocess.run([str(script)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    prefix = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    if done.returncode != 0 or prefix is None or not (prefix / "bin" / "freeswitch").exists():
        print("call_rate: no FreeSWITCH: " + (done.stderr.strip()[-300:] or "none found"), file=sys.stderr)
        return None
    shared = subprocess.run([str(ROOT / "scripts" / "peers" / "shared-dir"), str(ROOT)],
                            capture_output=True, text=True, check=False).stdout.strip()
    for conf in (prefix / "conf", Path(shared) / "peers" / "freeswitch" / "conf"):
        if (conf / "freeswitch.xml").exists():
            return prefix / "bin" / "freeswitch", conf
    print("call_rate: FreeSWITCH found but not its test config", file=sys.stderr)
    return None


def start_freeswitch(binary: Path, shipped: Path, work: Path, uas_port: int) -> Server:
    """FreeSWITCH in the foreground from a copy of the shipped config whose dialplan
    bridges every call to the UAS; ports through the config's environment overrides."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="vg-bench-fs-"))
    conf = run / "conf"
    shutil.copytree(shipped, conf)
    (conf / "dialplan" / "test.xml").write_text(
        FREESWITCH_DIALPLAN.read_text().replace("@UAS_PORT@", str(uas_port)))
    switch = conf / "autoload_configs" / "switch.conf.xml"
    text = switch.read_text()
    # the test config caps new sessions at 100/s (each call is two sessions) and 1000 at once
    for name, value in (("sessions-per-second", "5000"), ("max-sessions", "20000")):
        text, count = re.subn(rf'(name="{name}" value=")\d+"', rf'\g<1>{value}"', text)
        if count != 1:
            raise SystemExit(f"{switch}: no {name} to raise")
    switch.write_text(text)
    for sub in ("log", "db", "run", "temp"):
        (run / sub).mkdir()
    esl = free_port()
    env = dict(os.environ, FS_IP=HOST, FS_SIP_PORT=str(port), FS_ESL_PORT=str(esl),
               FS_RTP_START="20000", FS_RTP_END="31999", FS_LOGLEVEL="warning", FS_SIP_TRACE="no")
    log = work / "freeswitch.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(binary), "-nonat", "-nonatmap", "-nc", "-nf", "-np", "-conf", str(conf),
                                 *[a for sub in ("log", "db", "run", "temp") for a in (f"-{sub}", str(run / sub))]],
                                cwd=run, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Server("freeswitch", proc, port, log)

    def ready() -> bool:  # calls get 503 until the core says it is ready
        status = subprocess.run([str(binary.with_name("fs_cli")), "-P", str(esl), "-x", "status"],
                                capture_output=True, text=True, timeout=20, check=False).stdout
        return "is ready" in status and udp_taken(port)

    if not wait_for(lambda: not server.alive() or ready(), 60) or not server.alive():
        server.stop()
        raise SystemExit("freeswitch did not start:\n" + log.read_text(errors="replace")[-2000:])
    server.cleanup = lambda: shutil.rmtree(run, ignore_errors=True)  # type: ignore[attr-defined]
    return server


def start_uas(sipp: str, work: Path, rtp_echo: bool, scenario: list[str] | None = None,
              port: int | None = None) -> tuple[subprocess.Popen, int]:
    """The bot: sipp's built-in UAS (INVITE -> 180, 200 with PCMU SDP; ACK; BYE -> 200),
    or ``scenario`` (sipp arguments), on ``port`` or a free one."""
    port, media = port or free_port(), free_media_port()
    cmd = [sipp, "-i", HOST, "-p", str(port), "-mp", str(media), *(scenario or ["-sn", "uas"]),
           "-nostdin", "-l", "15000", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
           "-trace_err", "-error_file", str(work / "uas_errors.log"),
           *(["-rtp_echo"] if rtp_echo else [])]
    proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_for(lambda: udp_taken(port) or proc.poll() is not None, 5) or proc.poll() is not None:
        raise SystemExit(f"sipp UAS did not start: {' '.join(cmd)}")
    return proc, port


def free_media_port() -> int:
    for _ in range(200):
        port = random.randrange(40000, 60000, 4)
        if not any(udp_taken(p) for p in range(port, port + 4)):
            return port
    raise SystemExit("no free media ports")


# --------------------------------------------------------------------------- media
def write_pcap(path: Path, packets: int = 40, ptime_ms: int = 20) -> Path:
    """``packets`` RTP packets of PCMU (a 1 kHz tone), ``ptime_ms`` apart, as a pcap
    (Ethernet/IPv4/UDP) that sipp's play_pcap_audio replays with its own addresses."""
    import math

    def ulaw(sample: int) -> int:
        sign = 0x80 if sample < 0 else 0
        magnitude = min(abs(sample), 32635) + 132
        exponent = max(0, magnitude.bit_length() - 8)
        mantissa = (magnitude >> (exponent + 3)) & 0x0F
        return ~(sign | (exponent << 4) | mantissa) & 0xFF

    samples = 8 * ptime_ms
    rtp = []
    for i in range(packets):
        payload = bytes(ulaw(int(8000 * math.sin(2 * math.pi * 1000 * (i * samples + n) / 8000)))
                        for n in range(samples))
        rtp.append(struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0), i + 1, i * samples, 0x5EED) + payload)
    return write_rtp_pcap(path, rtp, ptime_ms)


def write_rtp_pcap(path: Path, packets: list[bytes], ptime_ms: int = 20) -> Path:
    """RTP packets (whole, header included), ``ptime_ms`` apart, as a pcap
    (Ethernet/IPv4/UDP) that sipp's play_pcap_audio replays with its own addresses."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, rtp in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                                socket.inet_aton(HOST), socket.inet_aton(HOST))
        checksum = sum(struct.unpack("!10H", ip_header))
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        ip_header = ip_header[:10] + struct.pack("!H", checksum) + ip_header[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip_header + udp
        t = i * ptime_ms / 1000
        out.append(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def scenario_for(mode: str, work: Path) -> Path:
    if mode == "sig":
        return SCENARIOS / "b2bua_uac_bench.xml"
    pcap = write_pcap(work / "pcmu_40x20ms.pcap")
    text = (SCENARIOS / "b2bua_uac_bench_rtp.xml").read_text().replace("@PCAP@", str(pcap))
    path = work / "b2bua_uac_bench_rtp.xml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- one step
def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 2)


@dataclass
class Step:
    target: str
    mode: str
    rate: int
    attempted: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_percent: float = 0.0
    achieved_rate: float = 0.0
    udp_in_per_call: float = 0.0
    """Datagrams delivered on the host per attempted call (SIP + RTP, all hops); counts
    everything on the host, so it means something only on an otherwise idle machine."""
    load_1min: float = 0.0
    sipp_exit: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.attempted > 0 and self.successful == self.attempted


def run_step(sipp: str, server: Server, scenario: Path, mode: str, rate: int, seconds: float,
             hold_ms: int, work: Path) -> Step:
    step_dir = work / f"{server.name}-{mode}-{rate}"
    step_dir.mkdir()
    calls = int(rate * seconds)
    limit = int(rate * (hold_ms / 1000 + 3)) + 50
    cmd = [
        sipp, f"{HOST}:{server.port}", "-sf", str(scenario), "-i", HOST, "-p", str(free_port()),
        "-mp", str(free_media_port()),
        "-m", str(calls), "-r", str(rate), "-l", str(limit), "-d", str(hold_ms),
        "-nostdin", "-timeout", f"{int(seconds + hold_ms / 1000 + 40)}s", "-timeout_error",
        "-recv_timeout", "8000",
        "-trace_stat", "-stf", str(step_dir / "stat.csv"), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "100",
        "-trace_err", "-error_file", str(step_dir / "errors.log"),
        "-max_recv_loops", "10000", "-max_sched_loops", "10000",
    ]
    pids = server.pids
    helpers = getattr(server, "helpers", [])
    cpu0, t0, udp0 = cpu_seconds(pids), time.monotonic(), udp_datagrams_in()
    helper0 = cpu_seconds(helpers)
    proc = subprocess.run(cmd, cwd=step_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=seconds + hold_ms / 1000 + 70)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    helper_cpu = cpu_seconds(helpers) - helper0
    udp = udp_datagrams_in() - udp0
    stats, rtts = sipp_results(step_dir)

    def count(name: str) -> int:
        try:
            return int(stats.get(name, "0") or 0)
        except ValueError:
            return 0

    step = Step(server.name, mode, rate)
    step.attempted = count("OutgoingCall(C)") or count("TotalCallCreated")
    step.successful, step.failed = count("SuccessfulCall(C)"), count("FailedCall(C)")
    step.retransmissions = count("Retransmissions(C)")
    step.p50_ms, step.p99_ms = percentile(rtts, 50), percentile(rtts, 99)
    step.cpu_percent = round(100 * cpu / elapsed, 1) if elapsed else 0.0
    # calls started per second over the sending window (the run also holds and drains)
    step.achieved_rate = round(step.attempted / max(seconds, 1e-9), 1)
    step.sipp_exit, step.seconds = proc.returncode, round(elapsed, 1)
    step.load_1min = round(os.getloadavg()[0], 2)
    step.udp_in_per_call = round(udp / step.attempted, 1) if step.attempted else 0.0
    if helpers and elapsed:
        step.notes.append(f"rtpengine cpu {round(100 * helper_cpu / elapsed, 1)}%")
    if step.attempted < calls:
        step.notes.append(f"sipp started {step.attempted} of {calls} calls")
    if not stats:
        step.notes.append("no sipp statistics: " + (proc.stdout + proc.stderr)[-300:].replace("\n", " "))
    return step


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)), help="calls/s, rising")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of new calls per rate")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call length after the ACK")
    parser.add_argument("--modes", default="sig,rtp", help="sig (signalling only), rtp (with RTP)")
    parser.add_argument("--no-kamailio", action="store_true", help="voicegw only")
    parser.add_argument("--media", default="relay",
                        help="voicegw's media.backend: relay, rtpengine, or both (relay,rtpengine); "
                             "with rtpengine the target is named voicegw+rtpengine and rtpengine's "
                             "own CPU is a note on each step")
    parser.add_argument("--target", default=None,
                        help="comma-separated: voicegw, kamailio, asterisk, freeswitch (default voicegw,kamailio)")
    parser.add_argument("--log-level", default="info", help="voicegw's --log-level (default info)")
    parser.add_argument("--keep", type=Path, help="keep the logs (sipp, daemon) in this directory")
    parser.add_argument("--stop-above", type=float, default=0.2,
                        help="skip higher rates once this fraction of a step's calls failed")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: run scripts/bootstrap", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    modes = [m for m in args.modes.split(",") if m in ("sig", "rtp")]
    wanted = (args.target.split(",") if args.target
              else ["voicegw"] + ([] if args.no_kamailio else ["kamailio"]))
    unknown = set(wanted) - {"voicegw", "kamailio", "asterisk", "freeswitch"}
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    kamailio = ensure_kamailio() if "kamailio" in wanted else None
    if "kamailio" in wanted and kamailio is None:
        print("call_rate: kamailio could not be installed: running without it", file=sys.stderr)
    asterisk = ensure_asterisk() if "asterisk" in wanted else None
    freeswitch = ensure_freeswitch() if "freeswitch" in wanted else None
    found = {"voicegw": True, "kamailio": kamailio, "asterisk": asterisk, "freeswitch": freeswitch}
    targets = [t for t in ("voicegw", "kamailio", "asterisk", "freeswitch") if t in wanted and found[t]]
    media = [m for m in args.media.split(",") if m in ("relay", "rtpengine")] or ["relay"]
    if "voicegw" in targets and "rtpengine" in media:
        at = targets.index("voicegw")
        targets[at:at + 1] = [*(["voicegw"] if "relay" in media else []), "voicegw+rtpengine"]

    load_before = tuple(round(x, 2) for x in os.getloadavg())
    if load_before[0] > 0.5:
        print(f"call_rate: the machine is not idle (load {load_before}): figures will be low",
              file=sys.stderr)
    steps: list[Step] = []
    exits: dict[str, int | None] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="voicegw-call-rate-") as tmp:
        work = Path(tmp)
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=False)
        for mode in modes:
            scenario = scenario_for(mode, work)
            for target in targets:
                run_dir = work / f"{target}-{mode}"
                run_dir.mkdir()
                uas, uas_port = start_uas(sipp, run_dir, rtp_echo=mode == "rtp")
                server = None
                rtpengine = None
                try:
                    if target == "voicegw":
                        server = start_voicegw(run_dir, uas_port, log_level=args.log_level)
                    elif target == "voicegw+rtpengine":
                        rtpengine, section = start_rtpengine(run_dir)
                        server = start_voicegw(run_dir, uas_port, log_level=args.log_level,
                                               config_text="api:\n  enabled: false\n" + section)
                        server.name = target
                        server.helpers = [rtpengine.pid]  # type: ignore[attr-defined]
                    elif target == "kamailio":
                        server = start_kamailio(kamailio, run_dir, uas_port)  # type: ignore[arg-type]
                    elif target == "asterisk":
                        server = start_asterisk(asterisk, run_dir, uas_port)  # type: ignore[arg-type]
                    else:
                        server = start_freeswitch(*freeswitch, run_dir, uas_port)  # type: ignore[misc]
                    for rate in rates:
                        step = run_step(sipp, server, scenario, mode, rate, args.seconds, args.hold_ms, run_dir)
                        steps.append(step)
                        print(f"  {target:8} {mode} {rate:>4}/s: {step.successful}/{step.attempted} ok, "
                              f"{step.failed} failed, p50 {step.p50_ms} ms, p99 {step.p99_ms} ms, "
                              f"cpu {step.cpu_percent}%", file=sys.stderr, flush=True)
                        if not server.alive():
                            step.notes.append(f"{target} died")
                            break
                        if step.attempted and step.failed / step.attempted > args.stop_above:
                            break
                finally:
                    if server is not None:
                        exits[f"{target}-{mode}"] = server.stop()
                    if rtpengine is not None:
                        stop_process(rtpengine)
                    stop_process(uas)

    best: dict[str, int | None] = {}
    for target in targets:
        for mode in modes:
            clean = [s.rate for s in steps if s.target == target and s.mode == mode and s.clean]
            best[f"{target}-{mode}"] = max(clean) if clean else None

    print(f"\nmachine: {os.cpu_count()} CPUs, load average before: {load_before}")
    print(f"{' vs '.join(targets)} (Kamailio: t_relay; Asterisk: Dial; FreeSWITCH: bridge), sipp UAC -> proxy/B2BUA -> sipp UAS, "
          f"{args.seconds:g} s of calls per rate, calls held {args.hold_ms} ms; "
          f"rtp: {40} PCMU packets (20 ms) per call from the caller, echoed by the UAS")
    header = (f"{'target':9} {'mode':4} {'rate':>5} {'attempted':>9} {'ok':>6} {'failed':>6} "
              f"{'retrans':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu %':>6} {'udp/call':>8}")
    print(header)
    print("-" * len(header))
    for s in steps:
        print(f"{s.target:9} {s.mode:4} {s.rate:>5} {s.attempted:>9} {s.successful:>6} {s.failed:>6} "
              f"{s.retransmissions:>7} {_fmt(s.p50_ms):>7} {_fmt(s.p99_ms):>7} {s.cpu_percent:>6} "
              f"{s.udp_in_per_call:>8}"
              + (f"  {'; '.join(s.notes)}" if s.notes else ""))
    print()
    for key, rate in best.items():
        print(f"highest rate with 0 failures, {key}: {rate if rate is not None else '-'} calls/s")
    ratios = {}
    for mode in modes:
        v, k = best.get(f"voicegw-{mode}"), best.get(f"kamailio-{mode}")
        if v and k:
            ratios[mode] = round(v / k, 2)
            print(f"voicegw/Kamailio ({mode}): {ratios[mode]} (at most {max(rates)} calls/s tried)")
        a = best.get(f"asterisk-{mode}")
        if v and a:
            ratios[f"asterisk-{mode}"] = round(v / a, 2)
            print(f"voicegw/Asterisk ({mode}): {ratios[f'asterisk-{mode}']} (at most {max(rates)} calls/s tried)")
        f = best.get(f"freeswitch-{mode}")
        if v and f:
            ratios[f"freeswitch-{mode}"] = round(v / f, 2)
            print(f"voicegw/FreeSWITCH ({mode}): {ratios[f'freeswitch-{mode}']} (at most {max(rates)} calls/s tried)")
    result = {
        "bench": "call_rate",
        "seconds_per_rate": args.seconds,
        "hold_ms": args.hold_ms,
        "rates": rates,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "max_rate_zero_failures": best,
        "ratio_voicegw_kamailio": ratios,
        "daemon_exits": exits,
        "elapsed_s": round(time.monotonic() - started, 1),
        "steps": [
            {k: v for k, v in s.__dict__.items()} for s in steps
        ],
    }
    print(json.dumps(result))
    return 0 if all(code in (0, None) for code in exits.values()) else 1


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    sys.exit(main())
