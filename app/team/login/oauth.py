"""The endpoints Claude Code calls to sign in (GATEWAY-PROTOCOL.md §3, §4, §6, §7): form-encoded, no
client authentication, no ``client_id`` or ``scope`` needed (unknown fields are ignored), answers in
RFC 6749's ``{"error", "error_description"}`` with ``Cache-Control: no-store``.

- device authorization: a 256-bit ``device_code`` (only its SHA-256 is kept), a base-20
  ``XXXX-XXXX`` ``user_code``, 10 minutes, ``interval`` 5 s;
- token, device grant (RFC 8628 §3.5): ``authorization_pending`` (400), ``slow_down`` (429, and the
  interval grows by 5 s) for a poll sooner than the interval allows, ``access_denied``,
  ``expired_token`` (also for an unknown code), a token pair once approved; a device code presented
  again after it bought tokens is ``invalid_grant`` and revokes what it bought (a replay means the
  code leaked);
- token, refresh grant: rotating refresh tokens; an unknown, expired, revoked or reused one is 401
  ``invalid_grant`` (the CLI then drops it); reuse revokes the whole sign-in;
- revocation (RFC 7009): an access or refresh token ends its sign-in on every instance; always 200.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import jwt

from app.team.login.idp import IdPRefused, IdPUnavailable
from app.team.login.sealed import seal, unseal, unseal_with_code
from app.team.login.store import Device, LoginStoreError, new_session_id
from app.team.login.tokens import REFRESH_TTL_S, new_refresh_token
from app.team.login.web import FormTooLarge, Receive, Send, oauth_error, read_form, send_json

log = logging.getLogger("patchbay.team")

DEVICE_CODE_TTL_S = 600
INTERVAL_S = 5
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: base-20, no vowels
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def new_user_code() -> str:
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_user_code(value: str) -> str:
    chars = "".join(c for c in value.upper() if c.isalnum())
    return f"{chars[:4]}-{chars[4:]}" if len(chars) == 8 else chars


async def _post_form(scope: dict[str, Any], receive: Receive, send: Send) -> dict[str, str] | None:
    if scope["method"] != "POST":
        await oauth_error(send, 405, "invalid_request", "This endpoint takes POST with a form body.")
        return None
    try:
        return await read_form(receive)
    except FormTooLarge:
        await oauth_error(send, 413, "invalid_request", "The form is too large.")
        return None


async def _unavailable(send: Send, exc: Exception) -> None:
    log.warning("sign-in: the store cannot be used: %s", exc)
    await oauth_error(send, 503, "temporarily_unavailable",
                      "Patchbay cannot reach its database right now; this is not a problem with your sign-in. "
                      "Try again in a moment.")


async def discovery(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    base = svc.public_url
    await send_json(send, 200, {
        "issuer": base, "device_authorization_endpoint": f"{base}/oauth/device_authorization",
        "token_endpoint": f"{base}/oauth/token", "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": [DEVICE_GRANT, "refresh_token"], "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"], "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid", "profile", "email"], "gateway_protocol_version": 1})


async def device_authorization(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if await _post_form(scope, receive, send) is None:
        return
    device_code = secrets.token_urlsafe(32)
    user_code = new_user_code()
    try:
        await svc.run(lambda: svc.store.new_device(device_code, user_code, time.time() + DEVICE_CODE_TTL_S,
                                                   INTERVAL_S))
    except LoginStoreError as exc:
        await _unavailable(send, exc)
        return
    page = f"{svc.public_url}/device"
    await send_json(send, 200, {"device_code": device_code, "user_code": user_code, "verification_uri": page,
                                "verification_uri_complete": f"{page}?user_code={user_code}",
                                "expires_in": DEVICE_CODE_TTL_S, "interval": INTERVAL_S})


async def token(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    form = await _post_form(scope, receive, send)
    if form is None:
        return
    grant = form.get("grant_type", "")
    try:
        if grant == DEVICE_GRANT:
            await _device_grant(svc, form.get("device_code", ""), send)
        elif grant == "refresh_token":
            await _refresh_grant(svc, form.get("refresh_token", ""), send)
        else:
            await oauth_error(send, 400, "unsupported_grant_type",
                              f"Patchbay takes grant_type {DEVICE_GRANT} or refresh_token.")
    except LoginStoreError as exc:
        await _unavailable(send, exc)


async def _tokens(svc: Any, send: Send, session_id: str, user: str, groups: tuple[str, ...],
                  refresh_token: str) -> None:
    access, expires_in = svc.signer().mint(session_id, user, groups)
    await send_json(send, 200, {"access_token": access, "token_type": "Bearer", "expires_in": expires_in,
                                "refresh_token": refresh_token})


async def _device_grant(svc: Any, device_code: str, send: Send) -> None:
    dev: Device | None = await svc.run(lambda: svc.store.device(device_code=device_code)) if device_code else None
    now = time.time()
    if dev is None:
        await oauth_error(send, 400, "expired_token", "This device code is unknown or expired. Start the sign-in "
                                                      "again.")
        return
    if dev.status == "consumed":
        revoked = await svc.run(lambda: svc.store.revoke(session_id=dev.session_id, by="patchbay",
                                                         why="its device code was presented again"))
        if revoked:
            await svc.audit("patchbay", "login.revoked", revoked[0].id,
                            {"user": revoked[0].user, "why": "device code replayed"})
        await oauth_error(send, 400, "invalid_grant", "This device code was already used. The sign-in it made "
                                                      "is revoked; sign in again.")
        return
    if now >= dev.expires_at:
        await oauth_error(send, 400, "expired_token", "The sign-in was not finished in time. Start it again.")
        return
    if dev.status == "denied":
        await oauth_error(send, 400, "access_denied", "The sign-in was denied in the browser.")
        return
    if dev.status == "pending":
        interval = dev.interval_s
        too_soon = dev.polled_at is not None and now - float(dev.polled_at) < interval * 0.8
        if too_soon:
            interval += 5  # RFC 8628 §3.5: every later poll must wait 5 s more
        await svc.run(lambda: svc.store.polled(dev.device_hash, now, interval))
        if too_soon:
            await oauth_error(send, 429, "slow_down", f"Poll at most every {interval:.0f} seconds.")
        else:
            await oauth_error(send, 400, "authorization_pending", "Waiting for the browser to finish the sign-in.")
        return
    session_id = new_session_id()
    refresh = new_refresh_token()
    idp = unseal_with_code(dev.idp_refresh, device_code) if dev.idp_refresh else None
    kept = seal(idp, refresh) if idp else None  # from now on under the refresh token (sealed.py)
    if not await svc.run(lambda: svc.store.consume(dev, session_id, refresh, now + REFRESH_TTL_S, kept)):
        await oauth_error(send, 400, "invalid_grant", "This device code was already used. Sign in again.")
        return
    assert dev.user is not None
    await svc.audit(dev.user, "login.signed_in", session_id, {"user": dev.user, "groups": list(dev.groups)})
    await _tokens(svc, send, session_id, dev.user, dev.groups, refresh)


_REFUSED = {"unknown": "This refresh token is not one this gateway issued.",
            "expired": "This refresh token has expired.",
            "revoked": "This sign-in was revoked.",
            "reused": "This refresh token was already used; the sign-in is revoked to be safe."}


async def _refresh_grant(svc: Any, refresh_token: str, send: Send) -> None:
    if not refresh_token:
        await oauth_error(send, 400, "invalid_request", "refresh_token is missing.")
        return
    new = new_refresh_token()
    checked = await _ask_idp(svc, refresh_token, new, send)
    if checked is False:
        return
    kept, groups = checked if checked is not True else (None, None)
    status, session = await svc.run(lambda: svc.store.rotate(refresh_token, new, time.time() + REFRESH_TTL_S,
                                                             idp_refresh=kept, groups=groups))
    if status == "ok":
        await _tokens(svc, send, session.id, session.user, session.groups, new)
        return
    if status == "reused" and session is not None:
        log.warning("sign-in: a refresh token of %s was used twice; the sign-in %s is revoked", session.user,
                    session.id)
        await svc.audit("patchbay", "login.revoked", session.id, {"user": session.user, "why": "refresh reused"})
    # 401 invalid_grant: Claude Code drops its refresh token (the deprovisioning hook, §6.2)
    await oauth_error(send, 401, "invalid_grant", _REFUSED[status] + " Sign in again with /login.")


async def _ask_idp(svc: Any, refresh_token: str, new: str, send: Send) -> bool | tuple[str, tuple[str, ...] | None]:
    """Before a refresh: the IdP still signs the person in? True: nothing to ask (no IdP refresh token
    kept, or the token is not usable: the store says why); (IdP refresh token sealed for ``new``,
    groups or None); False: answered already (401 and the sign-in revoked, or 503)."""
    sealed = await svc.run(lambda: svc.store.idp_refresh_of(refresh_token))
    idp_token = unseal(sealed, refresh_token) if sealed else None
    if idp_token is None:
        return True
    sid = await svc.run(lambda: svc.store.session_of_refresh(refresh_token))
    session = await svc.run(lambda: svc.store.session(sid)) if sid else None
    if session is None:
        return True
    try:
        keep, groups = await svc.idp.refresh(idp_token, session.user)
    except IdPUnavailable as exc:
        log.warning("sign-in: a refresh of %s could not ask the IdP: %s", session.user, exc)
        await oauth_error(send, 503, "temporarily_unavailable", "The company's sign-in service cannot be reached "
                          "right now; your current token keeps working until it expires. Try again later.")
        return False
    except IdPRefused as exc:
        revoked = await svc.run(lambda: svc.store.revoke(session_id=session.id, by="the identity provider",
                                                         why="the company's sign-in service no longer signs you in"))
        for s in revoked:
            await svc.audit("patchbay", "login.revoked", s.id, {"user": s.user, "why": str(exc)})
        await oauth_error(send, 401, "invalid_grant", "The company's sign-in service no longer signs you in. "
                                                      "Sign in again with /login.")
        return False
    return seal(keep, new), groups


async def revoke(svc: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    form = await _post_form(scope, receive, send)
    if form is None:
        return
    value = form.get("token", "")
    try:
        session_id: str | None = None
        if value.startswith("pbr_"):
            session_id = await svc.run(lambda: svc.store.session_of_refresh(value))
        elif value.startswith("eyJ"):
            try:  # its signature must be ours; an expired token still names its sign-in
                claims = jwt.decode(value, svc.signer().key, algorithms=["HS256"], audience="patchbay",
                                    issuer=svc.public_url, options={"verify_exp": False})
                session_id = str(claims.get("sid") or "") or None
            except jwt.InvalidTokenError:
                session_id = None
        if session_id is not None:
            sid = session_id
            revoked = await svc.run(lambda: svc.store.revoke(session_id=sid, by="the signed-in user",
                                                             why="signed out"))
            for s in revoked:
                await svc.audit(s.user, "login.signed_out", s.id, {"user": s.user})
    except LoginStoreError as exc:
        await _unavailable(send, exc)
        return
    await send_json(send, 200, {})  # RFC 7009 §2.2: 200 whether or not the token was valid
