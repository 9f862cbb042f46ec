"""Annotator accounts on Label Studio 1.23 Community: the organisation's invite link.

What the community edition offers (checked against the 1.23 server code):

* ``POST /api/users/`` (admin token) creates a user **without a password**: the
  users API never reads or sets one, so such an account cannot log in through
  the form.  :meth:`LSClient.ensure_user` uses it for API-only accounts
  (simulated annotators).
* The invite link ``GET /api/invite`` -> ``/user/signup/?token=<org token>`` is
  how a person joins the organisation with a password.  Our server runs with
  ``LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true``, so signing up needs that
  token.  ``POST /api/invite/reset-token`` invalidates old links.
* There are no roles in the community edition: every member of the
  organisation can open every project (and its settings).  Keep the server on
  127.0.0.1 or behind HTTPS and give the link only to your annotators.

:func:`create_annotator` does what a new annotator does with the link: it
opens the signup form (for the CSRF cookie) and posts e-mail + password, so
the account exists, belongs to the organisation and can log in at
``/user/login/``.  The password is generated with :mod:`secrets` unless
given; it is returned (never printed nor logged) so it can be handed to the
annotator; :func:`save_accounts` keeps it in a 0600 file if you want one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from mmnerd.errors import LabelStudioError

MIN_PASSWORD = 8  # Label Studio's AUTH_PASSWORD_MIN_LENGTH


@dataclass
class Account:
    """A Label Studio login (the password never appears in repr)."""

    id: int
    email: str
    password: str = field(repr=False, default="")


def invite_link(client: Any) -> str:
    """The organisation's signup link (absolute URL) — share it with annotators only."""
    data = client.get("/api/invite")
    url = (data or {}).get("invite_url")
    if not url:
        raise LabelStudioError("GET /api/invite: no invite_url in the answer")
    return f"{client.url}{url}" if url.startswith("/") else url


class _Form(HTMLParser):
    """What a Django form page holds for us: its CSRF token and its error messages (the
    text of elements whose class names an error)."""

    def __init__(self, html: str):
        super().__init__()
        self.csrf = ""
        self.errors: list[str] = []
        self._in_error = 0  # depth inside an error element
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrfmiddlewaretoken" and not self.csrf:
            self.csrf = a.get("value") or ""
        if self._in_error or "error" in (a.get("class") or ""):
            self._in_error += tag not in _VOID

    def handle_endtag(self, tag: str) -> None:
        if self._in_error and tag not in _VOID:
            self._in_error -= 1

    def handle_data(self, data: str) -> None:
        if self._in_error and data.strip():
            self.errors.append(data.strip())


_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "source", "area", "col"})


def _csrf(html: str, cookies: Any) -> str:
    """The form's ``csrfmiddlewaretoken`` (else the ``csrftoken`` cookie)."""
    return _Form(html).csrf or cookies.get("csrftoken", "")


def _session() -> Any:
    """A session as a browser has one: never resends (a signup or login is a POST, and
    the labelling stream's GET locks a task)."""
    from mmnerd.http import session

    return session(0, timeout=60)


def create_annotator(client: Any, email: str, password: str | None = None) -> Account:
    """Sign ``email`` up through the invite link; returns its id and password.

    Raises :class:`LabelStudioError` if the e-mail is taken (the API cannot set a
    password on an existing account: reset it with ``label-studio reset_password``
    on the server, see docs/annotation-browser.md) or the password is refused.
    """
    import requests

    email = email.strip().lower()
    if any(u.get("email", "").lower() == email for u in client.users()):
        raise LabelStudioError(
            f"Label Studio user {email} already exists; pick another e-mail or reset its "
            f"password on the server (label-studio reset_password)"
        )
    password = password or secrets.token_urlsafe(12)
    if len(password) < MIN_PASSWORD:
        raise LabelStudioError(f"annotator password: at least {MIN_PASSWORD} characters")
    link = invite_link(client)
    with _session() as s:
        try:
            page = s.get(link)
            r = s.post(
                link,
                data={
                    "csrfmiddlewaretoken": _csrf(page.text, s.cookies),
                    "email": email,
                    "password": password,
                },
                headers={"Referer": link},
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise LabelStudioError(
                f"signup of {email}: cannot reach Label Studio at {client.url} ({type(e).__name__})"
            ) from None
        if r.status_code != 302:
            # the form is rendered again with its errors (e.g. a too short password)
            detail = "; ".join(_Form(r.text).errors)[:200]
            raise LabelStudioError(
                f"signup of {email} refused (HTTP {r.status_code}){': ' + detail if detail else ''}"
            )
        me = s.get(f"{client.url}/api/current-user/whoami")
        if me.status_code != 200:
            raise LabelStudioError(f"signup of {email}: the new session is not logged in")
        return Account(int(me.json()["id"]), email, password)


def save_accounts(path: str | Path, accounts: list[Account]) -> Path:
    """Write ``[{id, email, password}]`` to ``path`` with mode 0600 (merged by e-mail).

    The folder holding it is made (or tightened to) 0700: give it a folder of its own,
    e.g. the Label Studio data dir."""
    from mmnerd.io import read_json, write_json
    from mmnerd.privacy import private_dir, private_file

    path = Path(path)
    private_dir(path.parent)
    if path.exists():
        private_file(path)
    known = {a["email"]: a for a in (read_json(path) or [])}
    for a in accounts:
        known[a.email] = {"id": a.id, "email": a.email, "password": a.password}
    write_json(path, sorted(known.values(), key=lambda a: a["id"]), perms=0o600)
    return path


def login(url: str, email: str, password: str) -> Any:
    """A ``requests.Session`` logged in through the form, as the browser is: the API then
    answers as that annotator (``GET /api/projects/<id>/next`` is the lock-aware labelling
    stream).  Its later POSTs carry the CSRF token Django wants from a session."""
    import requests

    url = url.rstrip("/")
    s = _session()
    try:
        page = s.get(f"{url}/user/login/")
        r = s.post(
            f"{url}/user/login/",
            data={
                "csrfmiddlewaretoken": _csrf(page.text, s.cookies),
                "email": email,
                "password": password,
            },
            headers={"Referer": f"{url}/user/login/"},
            allow_redirects=False,
        )
    except requests.RequestException as e:
        raise LabelStudioError(
            f"login of {email}: cannot reach Label Studio at {url} ({type(e).__name__})"
        ) from None
    me = s.get(f"{url}/api/current-user/whoami")
    if r.status_code != 302 or me.status_code != 200:
        raise LabelStudioError(f"login of {email} refused (HTTP {r.status_code})")
    s.headers.update({"X-CSRFToken": s.cookies.get("csrftoken", ""), "Referer": f"{url}/"})
    return s
