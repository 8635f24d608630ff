"""Who may reach what: the Host header check, and whether a request may use a route.

- **Host** (DNS rebinding): a web page whose name was rebound to 127.0.0.1 reaches the gateway
  with its own name in the Host header. Loopback names and IP addresses (a rebinding page never
  has one) are accepted, and the names written in ``[gateway] allowed_hosts``; nothing else.
- **Routes**: a backend with a stored key (any ``auth`` but ``client``) needs the gateway token;
  a ``client`` backend forwards the caller's own key and is open on loopback. Bound beyond
  loopback (``--host 0.0.0.0``), every route, ``/v1/models`` and ``/health`` need the token.
  ``authorize`` is asked of the route a request is finally sent to: after budget admission,
  failover and routing rules, not only the one first chosen.
- **Where the token travels**: in Patchbay's own header ``x-patchbay-token`` (Claude Code adds it
  from ``ANTHROPIC_CUSTOM_HEADERS``), which leaves ``Authorization`` / ``x-api-key`` to the
  user's own Anthropic credential (a subscription's OAuth token, an API key); or, as set-ups made
  before that header did, as the Bearer / ``x-api-key`` itself (docs/protocol.md §1).
"""

from __future__ import annotations

import functools
import ipaddress

from app.config import BackendConfig, is_loopback_host
from app.errors import ApiError

TOKEN_HEADER = "x-patchbay-token"  # the gateway token, beside the client's own credential
TOKEN_HEADER_B = TOKEN_HEADER.encode()
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@functools.lru_cache(maxsize=64)
def exposed(bind_host: str) -> bool:
    """True when the gateway listens beyond this machine (0.0.0.0, ::, a LAN address)."""
    return not is_loopback_host(bind_host)


def _hostname(value: str) -> str:
    """``example.com:8787`` → ``example.com``; ``[::1]:8787`` → ``::1``."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        return v[1:end] if end > 0 else v
    if v.count(":") == 1:
        v = v.split(":", 1)[0]
    return v.rstrip(".")


@functools.lru_cache(maxsize=256)
def host_allowed(value: str, allowed: tuple[str, ...]) -> bool:
    name = _hostname(value)
    if not name:
        return False
    if name in LOOPBACK_NAMES or name.endswith(".localhost") or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
        return True  # an address, not a name: no DNS answer was rebound to reach us
    except ValueError:
        return False


def check_host(host: bytes | None, allowed: tuple[str, ...]) -> None:
    """Refuse a request whose Host header names a host this gateway is not (403)."""
    if host is None:  # HTTP/1.0 without Host: not a browser
        return
    value = host.decode("latin-1")
    if not host_allowed(value, allowed):
        raise ApiError(
            403, "permission_error",
            f"Patchbay does not answer requests addressed to {_hostname(value)!r} (the Host header): a web page "
            "may be trying to reach it through a rebound DNS name. Use http://127.0.0.1 or localhost, or add "
            f'"{_hostname(value)}" to allowed_hosts in the [gateway] section if that name really is this machine.',
        )


def may_use(backend: BackendConfig, authed: bool, is_exposed: bool) -> bool:
    return authed or (backend.auth == "client" and not is_exposed)


def token_needed(presented: bool, is_exposed: bool) -> ApiError:
    what = "a credential that is not the gateway token" if presented else "no credentials"
    why = " Patchbay listens beyond this machine, so every request needs it." if is_exposed else ""
    return ApiError(
        401, "authentication_error",
        f"Patchbay needs its gateway token (the request carried {what}).{why} Send it in the {TOKEN_HEADER} "
        f"header: `patchbay connect` (or the app's Connect) sets ANTHROPIC_CUSTOM_HEADERS to "
        f'"{TOKEN_HEADER}: <token>" for Claude Code, `patchbay env` prints it for a shell. Your own Anthropic '
        "login or key stays where it is. Without an Anthropic account, ANTHROPIC_AUTH_TOKEN=<token> works too.",
    )


def authorize(backend: BackendConfig, authed: bool, is_exposed: bool, presented: bool) -> None:
    """Raise 401 unless this request may be sent to ``backend``."""
    if not may_use(backend, authed, is_exposed):
        raise token_needed(presented, is_exposed)
