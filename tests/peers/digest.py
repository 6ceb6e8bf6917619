"""Checking the digest credentials voicegw sent (RFC 7616 3.4.1, MD5 with qop=auth),
computed here from the password the test gave it, for the auth wire tests."""

from __future__ import annotations

import hashlib
import re

from peers.calls import SipMessage


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_fields(value: str) -> dict[str, str]:
    """The parameters of an Authorization / Proxy-Authorization header's value."""
    return dict(re.findall(r'(\w+)="?([^",]*)"?', value))


def expected_response(fields: dict[str, str], method: str, password: str) -> str:
    """What ``response`` must be for these fields (their username, realm, nonce, nc,
    cnonce and uri), ``method`` and ``password``, with qop=auth."""
    ha1 = md5(f"{fields['username']}:{fields['realm']}:{password}")
    ha2 = md5(f"{method}:{fields['uri']}")
    return md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")


def checked_credentials(message: SipMessage, username: str, password: str, *,
                        realm: str = "voicegw.test", header: str = "authorization") -> dict[str, str]:
    """The credentials a request carried, checked: ``uri`` is its Request-URI, the
    username, realm and qop=auth, and the response is right for its method."""
    fields = digest_fields(message.header(header) or "")
    method, request_uri = message.first_line.split(" ")[:2]
    assert fields.get("uri") == request_uri, (fields, request_uri)
    assert (fields["username"], fields["realm"], fields["qop"]) == (username, realm, "auth")
    assert fields["response"] == expected_response(fields, method, password)
    return fields
