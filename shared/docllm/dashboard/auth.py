"""Who may use the dashboard, and forms that only the dashboard's own pages can submit.

A browser cannot add ``Authorization: Bearer KEY`` to a link it follows, so the dashboard signs a
person in once: ``/dashboard/login`` takes the platform's API key (the one ``docllm status`` names) and
answers with a session cookie. The cookie holds a value *derived* from the key (an HMAC), never the
key itself, so a leaked cookie cannot call the JSON API. It is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page can make the browser send it) and scoped to ``/dashboard``.
The local API front (``runtime/http.py``) accepts it on dashboard paths only, as it accepts the key.

Forms that change something (approve, reject, roll back, verify, upload) carry a CSRF token, another
HMAC of the key, checked with the request's ``Origin`` — a second lock behind ``SameSite``.

On AWS the HTTP API authenticates every request with IAM (SigV4), which browsers do not sign: there the
pages are read through a signing proxy and the forms are refused (approvals belong to the SageMaker
Model Registry, which records the IAM caller: see docs/dashboard.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

SESSION_COOKIE = "docllm_session"
#: Where the cookie is sent: the dashboard's paths, not the JSON API's.
COOKIE_PATH = "/dashboard"
LOGIN_PATH = "/dashboard/login"


def _derive(key: str, purpose: str) -> str:
    return hmac.new(key.encode("utf-8"), f"docllm dashboard {purpose} v1".encode(), hashlib.sha256).hexdigest()


def session_token(key: str) -> str:
    """The session cookie's value for the API key ``key``."""
    return _derive(key, "session")


def csrf_token(key: str) -> str:
    """The token every state-changing form of the dashboard carries."""
    return _derive(key, "csrf")


def cookie(headers: Mapping[str, str], name: str = SESSION_COOKIE) -> str | None:
    """The value of cookie ``name`` in a request's (lower-cased) headers, if it is there."""
    raw = headers.get("cookie", "")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def session_valid(headers: Mapping[str, str], key: str) -> bool:
    """Whether the request carries the session cookie of ``key`` (compared in constant time)."""
    given = cookie(headers)
    return given is not None and hmac.compare_digest(given.encode(), session_token(key).encode())


#: What anyone may fetch: the sign-in page and the stylesheet it uses (nothing of the platform's).
PUBLIC_PREFIXES = (LOGIN_PATH, "/dashboard/static/")


def is_public(path: str) -> bool:
    return path == LOGIN_PATH or path.startswith(PUBLIC_PREFIXES[1])


def is_dashboard_path(path: str) -> bool:
    return path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/")


def set_cookie_header(key: str, *, secure: bool = False) -> str:
    """``Set-Cookie`` for a person who just gave the right key."""
    flags = f"; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
    return f"{SESSION_COOKIE}={session_token(key)}{flags}"


def clear_cookie_header() -> str:
    return f"{SESSION_COOKIE}=; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0"
