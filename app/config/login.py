"""The ``[team.login]`` table: Claude Code's gateway sign-in against the ``[team] oidc_issuer``.

    [team.login]
    client_id = "gw-client"                      # the IdP client Patchbay uses for the browser leg
    client_secret = "env:PB_OIDC_CLIENT_SECRET"  # "env:NAME", "keyring" (`patchbay key set team-login`) or "none"
    public_url = "https://patchbay.corp.example" # where developers reach the gateway

Parsed by ``parse_login`` for ``app/config/team.py``; errors are ``ConfigError``s in the file's
usual words (what is wrong, what to write).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.config.reading import Where, secure_url, unknown_keys

_SECRET = re.compile(r"^(none|keyring|env:[A-Za-z_][A-Za-z0-9_]*)$")
KEYRING_ACCOUNT = "team-login"  # `patchbay key set team-login` stores the client secret under this name
_KNOWN = {"client_id", "client_secret", "public_url"}


@dataclass(frozen=True)
class LoginConfig:
    client_id: str
    public_url: str  # no trailing slash
    client_secret: str = "none"  # the form, never the secret itself


def parse_login(t: Any, where: Where, *, identity: tuple[str, ...], issuer: str | None) -> LoginConfig | None:
    if t is None:
        return None
    head = where.line_of(r"^\s*\[\s*team\.login\s*\]")
    start = (head or 1) - 1

    def at(key: str) -> int | None:
        return where.line_of(rf"^\s*{re.escape(key)}\s*=", start=start) or head

    if not isinstance(t, dict):
        raise where.fail("[team.login] must be a table", "Write it as a [team.login] section.", key="team.login")
    unknown_keys(t, _KNOWN, "team.login.", where, start=start)
    if "oidc" not in identity or not issuer:
        raise where.fail("[team.login] signs people in at the company's OIDC issuer, but [team] names none",
                         'Add "oidc" to team.identity and set oidc_issuer and oidc_audience.', line=head)
    values: dict[str, str] = {}
    for key, example in (("client_id", '"gw-client"'), ("public_url", '"https://patchbay.corp.example"')):
        v = t.get(key)
        if not isinstance(v, str) or not v.strip():
            raise where.fail(f"team.login.{key} is {'missing' if v is None else repr(v)}",
                             f"Write {key} = {example}.", line=at(key))
        values[key] = v.strip()
    url = values["public_url"].rstrip("/")
    if not secure_url(url) or "?" in url or "#" in url:
        raise where.fail(f"team.login.public_url is {url!r}",
                         "Write the https:// address developers reach the gateway at (plain http only on this "
                         "machine's loopback), without a query.", line=at("public_url"))
    secret = t.get("client_secret", "none")
    if not isinstance(secret, str) or not _SECRET.match(secret):
        raise where.fail("team.login.client_secret is not one of Patchbay's secret forms",
                         'Write client_secret = "env:NAME" (an environment variable holding it), "keyring" '
                         '(`patchbay key set team-login`) or "none" (a public client with PKCE only).',
                         line=at("client_secret"))
    return LoginConfig(values["client_id"], url, secret)
