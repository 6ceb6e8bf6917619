"""Throwaway certificates for TLS wire tests, made with the ``openssl`` CLI.

One test CA and one leaf certificate for 127.0.0.1 (and ``sip.voicegw.test``), usable
as server and client certificate, so that voicegw, PJSIP agents and any other TLS
peer on loopback can present it and verify each other against the same CA.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")
SERVER_NAME = "sip.voicegw.test"


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if OPENSSL is None:
        raise RuntimeError("the openssl CLI is missing: run scripts/bootstrap")
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(folder: Path) -> Pki:
    """A CA (``ca.pem``) and a leaf (``leaf.pem``/``leaf.key``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-sha256",
             "-subj", "/CN=voicegw test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={SERVER_NAME}", cwd=folder)
    (folder / "leaf.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:{SERVER_NAME}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-sha256",
             "-extfile", "leaf.ext", cwd=folder)
    return Pki(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key")
