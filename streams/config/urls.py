"""URLs in settings: hiding their passwords in messages, and telling a usable http(s) URL
from one a client would refuse.

Here, at the bottom of the layers, so that the settings can check a URL when they load
and the clients above say the same thing when they are given one.
"""

from __future__ import annotations

import re

# scheme://user:password@ : everything between "//" and the last "@" of the authority. A
# password may also hold a raw "/", "?" or "#" (people paste them unescaped): when what follows
# "user:" is no port (not all digits up to the path), the credentials run to the first "@".
# A password of digits then "/" stays ambiguous with host:port/path and is left as it is.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?:[^/?#\s]*@"
    r"|[^/?#\s@:\[]*:(?![0-9]*(?:[/?#\s]|$))[^\s@]*@)"
)


def redact_url(text: str) -> str:
    """`text` with the user:password@ of every URL in it replaced by ***@.

    A URL may carry its credentials (PIXELFLEET_CATALOG_URL=http://bob:secret@host/), and
    the messages that name the URL end up in terminals, logs and bug reports."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def http_url_problem(url: str) -> str | None:
    """Why an HTTP client could not use `url` as its base, in words that quote none of it
    (the parser's own message may quote part of a password); None when it can."""
    import httpx  # only when a URL is set: a stage worker that has none never loads it

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        # The usual cause: a "/", "?", "#" or "@" in the password cut the URL short, so
        # the rest of the password reads as a port or a path.
        return (
            "it cannot be parsed; write a '/', '?', '#' or '@' in a user name or password "
            "as %2F, %3F, %23 or %40"
        )
    if parsed.scheme not in ("http", "https"):
        return "it needs the scheme http:// or https://"
    if not parsed.host:
        return "it names no host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return "its port is not 1 to 65535"
    return None
