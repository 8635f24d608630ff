"""The Admin API for spend limits: Anthropic's ``/v1/organizations/spend_limits`` shapes on the team gateway.

Routes (GATEWAY-PROTOCOL.md §16; the objects are ``app/team/spend_limits.py``'s):

- ``POST /v1/organizations/spend_limits``: create or replace the limit of a scope and period;
  ``POST …/{id}``: change one; ``GET …/{id}``; ``DELETE …/{id}`` → ``spend_limit_deleted``.
- ``GET …/spend_limits?limit=&after_id=&before_id=&scope_type=`` → ``{data, has_more, first_id, last_id}``.
- ``GET …/spend_limits/effective?user_ids[]=&period[]=&q=&sort=spend_desc&limit=&page=`` → one row per
  person and period with a cap (the API's or the config's: ``source.origin``), ``period_to_date_spend``
  in cents as a decimal string, ``next_page``.
- ``GET …/spend_limits/audit?limit=&after_id=`` → the changes, newest first, with before / after.

Who may: an ``x-api-key`` of ``[[team.admin_keys]]`` (audited ``admin-key:<id>``; a ``read_only`` one
may only GET), or a verified person (any of the gateway's identity sources) in one of ``[team]
admin_groups`` (audited ``<source>:<user>``). No or a wrong credential: 401 ``authentication_error``
with ``x-should-retry: false``; a verified person outside the admin groups, or a read-only key
writing: 403 ``permission_error``. Every answer is JSON with ``request-id`` and ``Cache-Control:
no-store``; errors are Anthropic's envelope with the same ``request_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson

from app.budgets.limits import period_bounds
from app.config import Config
from app.config.admin import AdminKey, match_key, resolve_admin_keys
from app.errors import ApiError
from app.proxy import access, request_ids
from app.proxy.exchange import error_body
from app.team.identity import STOP_RETRYING, Identity
from app.team.policy import user_groups
from app.team.spend_limits import (
    PERIODS,
    SCOPE_TYPES,
    LimitError,
    SpendLimit,
    cents_text,
    effective_rows,
    parse_limit,
    rfc3339,
    source_json,
)
from app.team.spend_limits_store import LimitStoreUnavailable, LimitWatcher, SpendLimitStore

log = logging.getLogger("patchbay.admin")

PREFIX = "/v1/organizations/"
BASE = "/v1/organizations/spend_limits"
MAX_BODY = 64 * 1024
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _int_param(q: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name, [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name}: Expected a whole number from {lo} to {hi}, received {raw!r}") from None
    if not lo <= value <= hi:
        raise _bad(f"{name}: Expected a whole number from {lo} to {hi}, received {value}")
    return value


def _many(q: dict[str, list[str]], name: str) -> list[str]:
    return [v for key in (name, name + "[]") for v in q.get(key, []) if v]


class AdminApi:
    """An ASGI app for ``/v1/organizations/…``; ``config`` and ``gate`` are read per request (a
    reload changes them), ``watcher`` is told at once of a change made here."""

    def __init__(self, store: SpendLimitStore, watcher: LimitWatcher | None, config: Callable[[], Config],
                 gate: Callable[[], Any]) -> None:
        self.store = store
        self.watcher = watcher
        self._config = config
        self._gate = gate
        self._keys_for: tuple[tuple[AdminKey, ...], list[tuple[AdminKey, bytes]]] | None = None

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        request_id = scope.get("patchbay.request_id") or request_ids.new_id()
        send = request_ids.stamped(send, request_id)
        try:
            status, obj = await self._route(scope, receive)
            await _answer(send, status, orjson.dumps(obj))
        except ApiError as exc:
            await _answer(send, exc.status, error_body(exc.error_type, exc.message, request_id), exc.headers)
        except LimitStoreUnavailable as exc:
            await _answer(send, 503, error_body("api_error", f"{exc} Spend limits cannot be read or changed now; "
                                                "try again in a minute.", request_id))
        except Exception as exc:  # our own failure: still Anthropic's shape, never a secret
            log.exception("admin API %s %s failed", scope.get("method"), scope.get("path"))
            await _answer(send, 500, error_body("api_error", f"Patchbay failed while handling this admin request "
                                                f"({type(exc).__name__}). This is a bug in Patchbay; the gateway's "
                                                "log has the details.", request_id))

    async def _route(self, scope: dict[str, Any], receive: Receive) -> tuple[int, Any]:
        method, path = scope["method"], scope["path"].rstrip("/")
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=False)
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        access.check_host(host, self._config().gateway.allowed_hosts)  # as the gateway does: no rebound DNS name
        if not path.startswith(BASE):
            raise ApiError(404, "not_found_error", f"Patchbay's Admin API does not serve {method} {path}. It "
                               f"serves {BASE} (and /{{id}}, /effective, /audit).")
        rest = path[len(BASE):].lstrip("/")
        writes = method in ("POST", "DELETE")
        if method not in ("GET", "POST", "DELETE"):
            raise ApiError(405, "invalid_request_error", f"The Admin API takes GET, POST or DELETE, not {method}.")
        actor = await self._actor(scope, writes)
        if rest == "" and method == "POST":
            return 200, await self._upsert(await _body(receive), actor, None)
        if rest == "" and method == "GET":
            return 200, await asyncio.to_thread(self._list, q)
        if rest == "effective" and method == "GET":
            return 200, await asyncio.to_thread(self._effective, q)
        if rest == "audit" and method == "GET":
            return 200, await asyncio.to_thread(self._audit, q)
        if "/" in rest or rest in ("effective", "audit"):
            raise ApiError(405 if rest in ("effective", "audit") else 404,
                               "invalid_request_error" if rest in ("effective", "audit") else "not_found_error",
                               f"{method} {path} is not an Admin API endpoint.")
        if method == "GET":
            found = await asyncio.to_thread(self.store.get, rest)
            if found is None:
                raise ApiError(404, "not_found_error", "spend limit not found")
            return 200, found.to_json()
        if method == "DELETE":
            gone = await asyncio.to_thread(self.store.delete, rest, actor)
            if gone is None:
                raise ApiError(404, "not_found_error", "spend limit not found")
            self._changed()
            return 200, {"type": "spend_limit_deleted", "id": rest}
        return 200, await self._upsert(await _body(receive), actor, rest)

    # ------------------------------------------------------------------ who

    def _usable_keys(self, config: Config) -> list[tuple[AdminKey, bytes]]:
        keys = config.team.admin_keys if config.team is not None else ()
        if self._keys_for is None or self._keys_for[0] != keys:
            self._keys_for = (keys, resolve_admin_keys(keys))
        return self._keys_for[1]

    async def _actor(self, scope: dict[str, Any], write: bool) -> str:
        config = self._config()
        headers = {k.lower(): v for k, v in scope["headers"]}
        presented = headers.get(b"x-api-key", b"").decode("latin-1").strip()
        if presented:
            key = match_key(presented, self._usable_keys(config))
            if key is not None:
                if write and key.read_only:
                    raise ApiError(403, "permission_error", f"The admin key {key.id!r} is read-only: this "
                                       "request requires write:spend_limits.")
                return f"admin-key:{key.id}"
        gate = self._gate()
        identity: Identity | None = None
        if gate is not None and (presented or headers.get(b"authorization")):
            try:
                identity = await gate.identify(scope["headers"])
            except ApiError as exc:
                if exc.status != 401:
                    raise  # the identity provider or the key store cannot answer now: 503, not "wrong key"
        if identity is None:
            raise ApiError(401, "authentication_error", "missing or invalid admin credentials: send an admin "
                               "key of [[team.admin_keys]] in x-api-key, or the credential of a person in one of "
                               "[team] admin_groups.", headers=list(STOP_RETRYING))
        admin = config.team.admin_groups if config.team is not None else ()
        groups = set(identity.groups) | set(gate.groups_of(identity))
        if not admin or not groups & set(admin):
            raise ApiError(403, "permission_error", f"{identity.user} may not use the Admin API: it is for "
                               f"admin keys and people in [team] admin_groups ({', '.join(admin) or 'none set'}).")
        return f"{identity.source}:{identity.user}"

    # ------------------------------------------------------------------ changes

    async def _upsert(self, body: Any, actor: str, limit_id: str | None) -> dict[str, Any]:
        config = self._config()
        current = None
        if limit_id is not None:
            current = await asyncio.to_thread(self.store.get, limit_id)
            if current is None:
                raise ApiError(404, "not_found_error", "spend limit not found")
        try:
            inp = parse_limit(body, [b.id for b in config.backends], current)
            if inp.scope_type == "rbac_group" and config.team is not None and config.team.groups \
                    and config.team.group(inp.scope_id) is None:
                raise LimitError(f"scope.rbac_group_id: {inp.scope_id!r} is not a group of this gateway "
                                 f"([[team.groups]]: {', '.join(g.name for g in config.team.groups)})")
            saved = await asyncio.to_thread(self.store.upsert, inp, actor, limit_id)
        except LimitError as exc:
            if str(exc) == "spend limit not found":
                raise ApiError(404, "not_found_error", str(exc)) from None
            raise _bad(str(exc)) from None
        self._changed()
        log.info("spend limit %s (%s %s %s) set to %s by %s", saved.id, saved.scope_type, saved.scope_id or "-",
                 saved.period, "unlimited" if saved.amount_cents is None else f"{saved.amount_cents} cents", actor)
        return saved.to_json()

    def _changed(self) -> None:
        """This instance applies its own change at once; the others read it within their poll."""
        if self.watcher is not None:
            try:
                self.watcher.refresh()
            except Exception:
                pass

    # ------------------------------------------------------------------ reads

    def _list(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int_param(q, "limit", 20, 1, 1000)
        kind = q.get("scope_type", [None])[-1]
        if kind is not None and kind not in SCOPE_TYPES:
            raise _bad(f"scope_type: Invalid enum value. Expected 'user' | 'rbac_group' | 'organization', "
                       f"received {kind!r}")
        items = [x for x in self.store.load() if kind is None or x.scope_type == kind]
        return page_of(items, limit, q.get("after_id", [None])[-1], q.get("before_id", [None])[-1])

    def _people(self, config: Config, ids: Sequence[str], since: float) -> list[tuple[str, tuple[str, ...]]]:
        seen = dict(self.store.people(since))
        if not ids:
            for x in self.store.load():
                if x.scope_type == "user":
                    seen.setdefault(x.scope_id, ())
            ids = sorted(seen)
        groups = config.team.groups if config.team is not None else ()
        out = []
        for u in ids:
            mine = seen.get(u) or seen.get(u.lower())
            if mine is None:  # no row yet: the configured groups their e-mail puts them in
                mine = user_groups(groups, Identity(u.lower() if "@" in u else u))
            out.append((u.lower() if "@" in u else u, tuple(mine)))
        return out

    def _effective(self, q: dict[str, list[str]]) -> dict[str, Any]:
        config = self._config()
        periods = _many(q, "period") or list(PERIODS)
        for p in periods:
            if p not in PERIODS:
                raise _bad(f"period: Invalid enum value. Expected 'daily' | 'weekly' | 'monthly', received {p!r}")
        limit = _int_param(q, "limit", 20, 1, 1000)
        offset = _int_param(q, "page", 0, 0, 10**9)
        now = time.time()
        month = period_bounds("month", now)[0]
        people = self._people(config, _many(q, "user_ids"), month)
        needle = q.get("q", [""])[-1].lower()
        if needle:
            people = [(u, g) for u, g in people if needle in u.lower()]
        rows = effective_rows(config.budgets, self.store.load(), people, periods)
        spent: dict[str, dict[str, float]] = {}
        for p in periods:
            start, end = period_bounds(PERIODS[p], now)
            spent[p] = self.store.spent(sorted({u for u, _g, c in rows if c.period == p}), start, end)
        data: list[dict[str, Any]] = []
        spends: list[float] = []
        for user, groups, cap in rows:
            spends.append(spent[cap.period].get(user, 0.0))
            data.append({
                "scope": {"type": "user", "user_id": user}, "groups": list(groups),
                "actor": {"type": "user_actor", "user_id": user, "name": None,
                          "email_address": user if "@" in user else None, "deleted": False},
                "amount": None if cap.amount_cents is None else str(cap.amount_cents), "currency": "USD",
                "period": cap.period, "source": source_json(cap),
                "spend_limit_id": cap.limit.id if cap.limit is not None else None,
                "period_to_date_spend": cents_text(spent[cap.period].get(user, 0.0))})
        sort = q.get("sort", [None])[-1]
        if sort == "spend_desc":
            data = [d for _s, _i, d in sorted(((-x, i, d) for i, (x, d) in enumerate(zip(spends, data, strict=True))),
                                               key=lambda t: (t[0], t[1]))]
        elif sort is not None:
            raise _bad(f"sort: Invalid enum value. Expected 'spend_desc', received {sort!r}")
        chunk = data[offset:offset + limit]
        return {"data": chunk, "next_page": str(offset + limit) if offset + limit < len(data) else None}

    def _audit(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int_param(q, "limit", 20, 1, 1000)
        after = q.get("after_id", [None])[-1]
        try:
            after_seq = int(after) if after is not None else None
        except ValueError:
            raise _bad(f"after_id: {after!r} is not an audit event id") from None
        entries = self.store.audit(limit + 1, after_seq)
        data = [{"type": "audit_event", "id": str(e.seq), "created_at": rfc3339(e.at), "actor": e.actor,
                 "action": e.action, "target_id": e.subject, "before": e.detail.get("before"),
                 "after": e.detail.get("after"), "reason": e.detail.get("reason")} for e in entries[:limit]]
        return {"data": data, "has_more": len(entries) > limit}


def page_of(items: Sequence[SpendLimit], limit: int, after_id: str | None, before_id: str | None) -> dict[str, Any]:
    """Anthropic's list page: ``limit`` items after ``after_id`` (or the last ``limit`` before
    ``before_id``), ``has_more`` in the direction read, ``first_id`` / ``last_id``."""
    ids = [x.id for x in items]
    for name, ref in (("after_id", after_id), ("before_id", before_id)):
        if ref is not None and ref not in ids:
            raise ApiError(404, "not_found_error", f"{name}: spend limit {ref!r} not found")
    if before_id is not None:
        end = ids.index(before_id)
        start = max(0, end - limit)
        chunk, more = items[start:end], start > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        chunk, more = items[start:start + limit], start + limit < len(items)
    data = [x.to_json() for x in chunk]
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


async def _body(receive: Receive) -> Any:
    raw = b""
    while True:
        msg = await receive()
        raw += msg.get("body", b"")
        if len(raw) > MAX_BODY:
            raise ApiError(413, "request_too_large", f"An Admin API body is at most {MAX_BODY // 1024} KB.")
        if not msg.get("more_body"):
            break
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        raise _bad("The body is not valid JSON.") from None


async def _answer(send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
               (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
