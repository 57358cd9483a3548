"""Redis URLs as they may appear in messages and logs: every credential replaced by ``***``.

redis-py takes credentials from the userinfo (``redis://user:pw@host``) and from any query
parameter (``?password=pw``, ``?username=u``, ``?ssl_password=...``: every unknown name
becomes a client keyword). So the password in the userinfo, everything before the last
``@`` that is not a plain user name, the value of every query parameter not known to be
harmless, and any fragment are hidden, whatever the scheme (a wrong scheme is reported
too, and must not leak either).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

__all__ = ["redact_url"]

#: Query parameters that never carry a secret (redis-py's typed URL options).
_HARMLESS = frozenset(
    (
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_read_size",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "ssl_check_hostname",
        "ssl_cert_reqs",
        "ssl_min_version",
        "timeout",
        "protocol",
        "client_name",
        "decode_responses",
    )
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]*\]|[^:@\[\]]*)(:[0-9]*)?")
_HIDDEN = "***"


def redact_url(url: object) -> str:
    """``url`` fit for an error message: credentials and unknown query values hidden."""
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest, hash_sign, fragment = rest.partition("#")
    before_query, question, query = rest.partition("?")
    userinfo, at, location = before_query.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        plain_user = colon and _NAME.fullmatch(user) is not None
        userinfo = f"{user}:{_HIDDEN}@" if plain_user else f"{_HIDDEN}@"
    netloc, slash, path = location.partition("/")
    if _HOST_PORT.fullmatch(netloc) is None:
        netloc = _HIDDEN  # not host[:port]: a password cut short by '#', '?' or '/'
    before_query = (userinfo if at else "") + netloc + slash + path
    if question:
        query = "&".join(_redact_pair(name, value) for name, value in _pairs(query))
    text = f"{scheme}://" if sep else ""
    text += before_query + (f"?{query}" if question else "")
    return text + (f"#{_HIDDEN}" if hash_sign and fragment else "")


def _pairs(query: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&"):
        if not item:
            continue
        if "=" in item:
            ((name, value),) = parse_qsl(item, keep_blank_values=True) or [(item, "")]
            pairs.append((name, value))
        else:
            pairs.append((item, None))
    return pairs


def _redact_pair(name: str, value: str | None) -> str:
    if _NAME.fullmatch(name) is None:
        return _HIDDEN  # not a parameter name: possibly part of a mangled password
    if value is None:
        return name
    return f"{name}={value}" if name in _HARMLESS else f"{name}={_HIDDEN}"
