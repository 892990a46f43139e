"""Who refused a feed request, and what the user can do about it.

An RSSHub instance, or the CDN in front of it, answers a refused feed reader with a page
meant for a person: the reader itself would only say ``HTTP 403`` or ``not a feed: ...``,
naming neither who refused nor the fix.  :func:`recognise` knows three such answers
(issue 17):

- the public instance's restriction notice, HTTP 200 ``text/plain``: "Due to cost
  considerations, we will gradually restrict access to rsshub.app for some feed readers. ...
  rsshub.app is intended for testing purposes only ... we strongly recommend self-hosting
  RSSHub" (quoted from rsshub.app in Colin-XKL/FeedCraft #695, April 2026);
- a Cloudflare challenge, which the same report shows rsshub.app giving feed readers'
  User-Agents: HTTP 403 or 503, a ``cf-mitigated: challenge`` header, the title "Just a
  moment...", scripts under ``/cdn-cgi/challenge-platform/``;
- RSSHub's own error page for a route that failed (DIYgod/RSSHub ``lib/errors/index.tsx``
  renders ``lib/views/error.tsx``): HTTP 503 (404 for an unknown route, 403 for a refused
  one), "Looks like something went wrong", the message in a ``<code>`` after "Error
  Message:", the path after "Full Route:"; releases before 2024 (``lib/views/error.art``)
  put the message alone in ``<pre class="message">``.

The caller passes only answers that are not a feed (an error status, or a 200 the parser
refused), so a feed that quotes these words is never mistaken for a refusal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["PREFIX_BYTES", "recognise"]

#: How much of a body is looked at.  Every marker below sits in the first few KB of its page:
#: RSSHub's whole error page, layout included, renders to under 10 KB (lib/views/error.tsx
#: and layout.tsx), and the challenge page opens with its title.
PREFIX_BYTES = 64 * 1024
#: RSSHub's message can be a stack trace (outside NODE_ENV=production): its first line, cut.
_QUOTE_CHARS = 300

_SELF_HOST = "self-host RSSHub and set rsshub_base, or run docker compose (it starts one)"
_CHALLENGE_STATUSES = {403, 429, 503}
_CHALLENGE_TITLE = re.compile(r"<title>\s*just a moment", re.IGNORECASE)


def recognise(status: int | None, headers: Mapping[str, str], body: bytes | None, url: str,
              rsshub_base: str) -> str | None:
    """The error line for a refusal this module knows, or None for any other answer.

    ``url`` is the URL that answered and ``rsshub_base`` the config's, so the advice fits:
    an RSSHub route can move to another instance, a site's own URL cannot.
    """
    if status is None:
        return None
    head = (body or b"")[:PREFIX_BYTES].decode("utf-8", "replace")
    low = head.lower()
    lowered = {k.lower(): v for k, v in headers.items()}
    host = _host(url)
    if "restrict access" in low and "self-host" in low and "rsshub" in low:
        return f"{host} refused the route (the public instance restricts feed readers): " \
               f"{_SELF_HOST}"
    if status in _CHALLENGE_STATUSES and (
            lowered.get("cf-mitigated", "").strip().lower() == "challenge"
            or "/cdn-cgi/challenge-platform/" in low or _CHALLENGE_TITLE.search(head)):
        advice = _SELF_HOST if _on_rsshub(url, rsshub_base) else \
            "use the site's own feed, or its RSSHub route on your own instance"
        return f"{host} answered with a Cloudflare challenge page (HTTP {status}): it lets " \
               f"browsers through, not feed readers; {advice}"
    if "looks like something went wrong" in low and "rsshub" in low:
        route, message = _rsshub_error(head)
        route = route or _route(url, rsshub_base) or urlsplit(url).path or "/"
        said = f'RSSHub says "{message}"' if message else "RSSHub gave no message"
        return f"RSSHub at {host} failed on route {route} (HTTP {status}): {said}"
    return None


def _host(url: str) -> str:
    """host[:port], without any credentials."""
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _route(url: str, rsshub_base: str) -> str | None:
    """``/zaker/channel/13`` for a URL under ``rsshub_base``, else None."""
    base = rsshub_base.rstrip("/") + "/"
    return "/" + url[len(base):] if url.startswith(base) else None


def _on_rsshub(url: str, rsshub_base: str) -> bool:
    return _route(url, rsshub_base) is not None or urlsplit(url).hostname == "rsshub.app"


def _rsshub_error(html: str) -> tuple[str | None, str | None]:
    """(the request path, the first line of the message) out of an RSSHub error page."""
    # Here, not with the module: every fetch imports this one, few see an error page.
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    route = message = None
    for para in tree.css("p.message"):
        label = para.text(deep=False).strip().lower()
        code = para.css_first("code")
        value = code.text().strip() if code is not None else ""
        if label.startswith("error message"):
            message = value
        elif label.startswith("full route"):
            route = value
    if message is None and (pre := tree.css_first("pre.message")) is not None:
        message = pre.text()
    return route or None, _first_line(message) if message else None


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= _QUOTE_CHARS else line[:_QUOTE_CHARS - 1] + "…"
    return None
