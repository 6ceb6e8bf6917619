"""RTP packets as a pcap file that sipp's ``play_pcap_audio`` replays (it keeps the
UDP payload and puts its own addresses): a key press as RFC 4733 events."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from voicegw.media.dtmf import event_payloads

TELEPHONE_EVENT = 101


def write_rtp_pcap(path: Path, packets: list[bytes], ptime_ms: int = 20) -> Path:
    """Whole RTP packets, ``ptime_ms`` apart, in Ethernet/IPv4/UDP frames."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, rtp in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
        checksum = sum(struct.unpack("!10H", ip))
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        t = i * ptime_ms / 1000
        out.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def dtmf_pcap(path: Path, digit: str) -> Path:
    """One press of ``digit`` as telephone-events (payload type 101, one timestamp)."""
    packets = []
    for seq, (payload, marker) in enumerate(event_payloads(digit), 1):
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | TELEPHONE_EVENT, seq, 8000, 0x50A4)
        packets.append(header + payload)
    return write_rtp_pcap(path, packets)
