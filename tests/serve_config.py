"""The ``patchbay serve`` config the gateway tests and benches write: one backend on a fake
upstream, optional prices, a daily budget over all traffic and a ledger URL.

Written once here so that a change to the config format is made in one place, not in every test.
"""

from __future__ import annotations

from pathlib import Path

from app.core import Engine

#: Opus-like and Sonnet-like prices per million tokens: (input, output, cache_write, cache_read).
OPUS_PRICES = (15.0, 75.0, 18.75, 1.5)
SONNET_PRICES = (3.0, 15.0, 3.75, 0.3)


def serve_config(upstream: str, *, model: str = "priced", backend: str = "cloud", port0: bool = True,
                 prices: tuple[float, float, float, float] | None = None, budget_usd: float | None = None,
                 warn_at: float | None = None, ledger_url: str | None = None, backend_extra: str = "",
                 extra: str = "") -> str:
    """A config.toml: ``[gateway] port = 0`` (unless ``port0`` is false: ``serve`` picks its own),
    the backend, ``[active]``, then ``[[prices]]``, a ``block`` budget and ``[ledger]`` when given,
    and ``extra`` (more tables) last."""
    text = '\n[gateway]\nport = 0\n' if port0 else ""
    text += f'''
[[backends]]
id = "{backend}"
kind = "anthropic"
base_url = "{upstream}"
auth = "none"
models = ["{model}"]
{backend_extra}
[active]
backend = "{backend}"
model = "{model}"
'''
    if prices is not None:
        i, o, cw, cr = prices
        text += f'\n[[prices]]\nmodel = "{model}"\ninput = {i}\noutput = {o}\ncache_write = {cw}\ncache_read = {cr}\n'
    if budget_usd is not None:
        text += f'\n[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = {budget_usd}\n'
        if warn_at is not None:
            text += f'warn_at = {warn_at}\n'
        text += 'action = "block"\n'
    if ledger_url is not None:
        text += f'\n[ledger]\nurl = "{ledger_url}"\n'
    return text + extra


def start_engine(home: Path, config: str) -> Engine:
    """Write ``config`` as the home's config.toml and start an in-process gateway on it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config)
    eng = Engine()
    eng.start()
    return eng


def client_config(url: str, *, prices: tuple[float, ...] = (3.0, 15.0), models: bool = True,
                  gateway: bool = True, extra: str = "") -> str:
    """The default ``anthropic`` backend on ``url`` with ``auth = "client"`` (the user's own
    credential, e.g. a Claude subscription's OAuth bearer, goes on as it came), active, and
    claude-fake's ``[[prices]]``: (input, output) or all four of ``OPUS_PRICES``' fields.
    ``models`` false leaves the backend's model list out; ``gateway`` false the ``[gateway]`` table."""
    text = '\n[gateway]\nport = 0\n' if gateway else ""
    text += f'\n[[backends]]\nid = "anthropic"\nkind = "anthropic"\nbase_url = "{url}"\nauth = "client"\n'
    text += 'models = ["claude-fake"]\n' if models else ""
    text += '\n[active]\nbackend = "anthropic"\n\n[[prices]]\nmodel = "claude-fake"\n'
    for name, price in zip(("input", "output", "cache_write", "cache_read"), prices, strict=False):
        text += f"{name} = {price}\n"
    return text + extra


def oidc_team(issuer: str) -> str:
    """A ``[team]`` table that trusts the OIDC issuer (audience "patchbay") and a group "eng" of
    everyone at corp.example."""
    return f'''
[team]
identity = ["oidc"]
oidc_issuer = "{issuer}"
oidc_audience = "patchbay"

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
'''


def each_user_budget(limit_usd: float) -> str:
    """A daily ``each-user`` budget table of ``limit_usd`` (its action: the default)."""
    return f'\n[[budgets]]\nscope = "each-user"\nperiod = "day"\nlimit_usd = {limit_usd}\n'
