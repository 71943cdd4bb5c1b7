"""The console's cookies are Secure exactly when the browser reached facegate over TLS."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from gateway.console.auth import cookie_options, served_over_tls


def request(scheme: str, client: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-proto", forwarded.encode())] if forwarded else []
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "GET",
            "path": "/console/",
            "headers": headers,
            "client": (client, 5000),
            "server": ("gateway", 443),
        }
    )


def services(*trusted: str) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(trusted_proxies=list(trusted)))


@pytest.mark.parametrize(
    ("scheme", "client", "forwarded", "trusted", "secure"),
    [
        ("https", "10.0.0.9", None, (), True),  # TLS to facegate itself
        ("http", "10.0.0.9", None, (), False),
        ("http", "10.0.0.1", "https", ("10.0.0.1",), True),  # a trusted TLS proxy
        ("http", "10.0.0.9", "https", ("10.0.0.1",), False),  # anyone else's header
        ("http", "10.0.0.1", "http", ("10.0.0.1",), False),
    ],
)
def test_secure_flag(
    scheme: str, client: str, forwarded: str | None, trusted: tuple[str, ...], secure: bool
) -> None:
    assert served_over_tls(request(scheme, client, forwarded), services(*trusted)) is secure
    options = cookie_options(request(scheme, client, forwarded), services(*trusted))
    assert options == {
        "path": "/console/",
        "httponly": True,
        "secure": secure,
        "samesite": "strict",
    }
