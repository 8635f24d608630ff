"""The browser's side of a sign-in (GATEWAY-PROTOCOL.md §5): the verification page, the redirect to
the company's IdP and its redirect back.

1. ``GET /device[?user_code=X]``: a plain form with the code (pre-filled, never auto-submitted:
   RFC 8628 §5.4) and two buttons, continue or deny.
2. ``POST /device``: only from this page (``Origin`` = ``public_url``'s origin, or ``Sec-Fetch-Site:
   same-origin``; else 403). For a pending code: a fresh ``state`` (256 bits, stored hashed, usable
   once), ``nonce`` and PKCE verifier, a cookie ``pb_login`` binding the flow to this browser, and
   302 to the IdP's ``authorization_endpoint``.
3. ``GET /oauth/callback?code&state``: the state must be one Patchbay issued, not used yet, for a
   code still pending, and come back to the browser holding its cookie; then the code is exchanged
   (PKCE, ``client_secret_post``), the ID token verified (JWKS, ``aud`` = ``client_id``, nonce), and
   the device code approved for the person and their groups. ``?error=…`` from the IdP denies it.
   ``POST /device/deny``: denies the code (the CLI's next poll gets ``access_denied``).

An IdP that cannot be reached is a 503 page saying so; nothing here is a 500.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from app.team.login.idp import IdPRefused, IdPUnavailable
from app.team.login.oauth import normalise_user_code
from app.team.login.store import LoginStoreError, digest
from app.team.login.web import FormTooLarge, Receive, Send, cookie, header, para, query, read_form, send_html

log = logging.getLogger("patchbay.team")

COOKIE = "pb_login"
TITLE = "Sign in to Patchbay"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _form(code: str) -> str:
    return (f'<p>Check that this code matches the one Claude Code shows, then continue to your company\'s '
            f'sign-in.</p><form method="post" action="/device"><p><label>Code <input name="user_code" '
            f'value="{html.escape(code)}" autocomplete="off" required></label></p>'
            '<button type="submit">This matches my device — continue</button>'
            '<button type="submit" formaction="/device/deny" name="deny" value="1">Deny</button></form>')


async def _problem(svc: Any, send: Send, status: int, title: str, text: str) -> None:
    await send_html(send, status, title, para(text), csp_form=_csp(svc))


def _csp(svc: Any) -> str:
    return f"'self' {_origin(svc.idp.issuer)}"


def _same_origin(svc: Any, scope: dict[str, Any]) -> bool:
    origin = header(scope, b"origin")
    if origin is not None and origin != "null":
        return origin.rstrip("/") == _origin(svc.public_url)
    return header(scope, b"sec-fetch-site") == "same-origin"


async def _posted_code(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> str | None:
    if not _same_origin(svc, scope):
        await _problem(svc, send, 403, TITLE, "This form may only be sent from Patchbay's own sign-in page. Open "
                                              "the link Claude Code shows and try again.")
        return None
    try:
        form = await read_form(receive)
    except FormTooLarge:
        await _problem(svc, send, 413, TITLE, "The form is too large.")
        return None
    return normalise_user_code(form.get("user_code", ""))


async def device_page(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["method"] == "GET":
        await send_html(send, 200, TITLE, _form(query(scope).get("user_code", "")[:16]), csp_form=_csp(svc))
        return
    if scope["method"] != "POST":
        await _problem(svc, send, 405, TITLE, "This page takes GET or POST.")
        return
    address = (scope.get("client") or ("?", 0))[0]
    wait = svc.wrong_codes.blocked(address)
    if wait is not None:
        await _problem(svc, send, 429, TITLE, f"Too many wrong codes came from your address. Try again in "
                                              f"{wait / 60:.0f} minutes, with the code Claude Code shows.")
        return
    code = await _posted_code(svc, scope, receive, send)
    if code is None:
        return
    try:
        dev = await svc.run(lambda: svc.store.device(user_code=code))
        if dev is None or dev.status != "pending" or time.time() >= dev.expires_at:
            if dev is None:
                svc.wrong_codes.wrong(address)
            await _problem(svc, send, 400, TITLE, "This code is unknown, expired or already used. Start the "
                                                  "sign-in again from Claude Code (/login).")
            return
        state, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        location = await svc.idp.authorize_url(state, nonce, verifier)
        if not await svc.run(lambda: svc.store.begin_browser(code, state, browser, nonce, verifier)):
            await _problem(svc, send, 400, TITLE, "This code was used meanwhile. Start again from Claude Code.")
            return
    except IdPUnavailable as exc:
        await _problem(svc, send, 503, "Sign-in unavailable", str(exc))
        return
    except LoginStoreError as exc:
        log.warning("sign-in: the store cannot be used: %s", exc)
        await _problem(svc, send, 503, "Sign-in unavailable", "Patchbay cannot reach its database right now. Try "
                                                              "again in a moment.")
        return
    secure = "; Secure" if svc.public_url.startswith("https://") else ""
    set_cookie = f"{COOKIE}={browser}; Max-Age=600; HttpOnly; SameSite=Lax; Path=/oauth/callback{secure}"
    await send_html(send, 302, TITLE, para("Continuing to your company's sign-in…"), csp_form=_csp(svc),
                    headers=[(b"location", location.encode()), (b"set-cookie", set_cookie.encode())])


async def deny(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        await _problem(svc, send, 405, TITLE, "This page takes POST.")
        return
    code = await _posted_code(svc, scope, receive, send)
    if code is None:
        return
    try:
        dev = await svc.run(lambda: svc.store.device(user_code=code))
        done = dev is not None and await svc.run(lambda: svc.store.settle(dev.device_hash, "denied"))
    except LoginStoreError:
        await _problem(svc, send, 503, "Sign-in unavailable", "Patchbay cannot reach its database right now.")
        return
    await _problem(svc, send, 200 if done else 400, "Sign-in denied" if done else TITLE,
                   "Denied. Claude Code will say so; nobody was signed in." if done else
                   "This code is unknown or no longer waiting.")


def _sealed(idp_refresh: str | None, seal_key: str | None) -> str | None:
    from app.team.login.sealed import seal_to

    return seal_to(seal_key, idp_refresh) if idp_refresh and seal_key else None


async def callback(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    q = query(scope)
    state = q.get("state", "")
    try:
        dev = await svc.run(lambda: svc.store.device(state=state)) if state else None
        if dev is None or dev.status != "pending" or time.time() >= dev.expires_at:
            await _problem(svc, send, 400, TITLE, "This sign-in answer does not belong to a sign-in Patchbay "
                                                  "started, or it was already used (its state is wrong). Start "
                                                  "again from Claude Code (/login).")
            return
        held = cookie(scope, COOKIE)
        if held is None or digest(held) != dev.browser_hash:
            await _problem(svc, send, 400, TITLE, "This sign-in was started in another browser. Finish it in the "
                                                  "browser that opened the link, or start again.")
            return
        if not await svc.run(lambda: svc.store.take_state(dev.device_hash, state)):
            await _problem(svc, send, 400, TITLE, "This sign-in answer was already used. Start again.")
            return
        if q.get("error"):
            await svc.run(lambda: svc.store.settle(dev.device_hash, "denied"))
            await _problem(svc, send, 200, "Sign-in denied", "Your company's sign-in service did not sign you in "
                                                             f"({q['error'][:64]}). Claude Code will say so.")
            return
        user, groups, idp_refresh = await svc.idp.exchange(q.get("code", ""), dev.verifier or "", dev.nonce or "")
        if not await svc.run(lambda: svc.store.settle(dev.device_hash, "approved", user, groups,
                                                      _sealed(idp_refresh, dev.seal_key))):
            await _problem(svc, send, 400, TITLE, "This code is no longer waiting. Start again from Claude Code.")
            return
    except IdPUnavailable as exc:
        await _problem(svc, send, 503, "Sign-in unavailable", str(exc))
        return
    except IdPRefused as exc:
        await _problem(svc, send, 400, "Sign-in refused", str(exc))
        return
    except LoginStoreError as exc:
        log.warning("sign-in: the store cannot be used: %s", exc)
        await _problem(svc, send, 503, "Sign-in unavailable", "Patchbay cannot reach its database right now.")
        return
    log.info("sign-in: %s approved a device code in the browser", user)
    await send_html(send, 200, "Signed in", para(f"You are signed in as {user}. Go back to Claude Code: it "
                                                 "finishes by itself."),
                    headers=[(b"set-cookie", f"{COOKIE}=; Max-Age=0; HttpOnly; SameSite=Lax; "
                                             "Path=/oauth/callback".encode())])
