"""What the team identity check costs per request, with the signing keys already cached.

    .venv/bin/python bench/identity_bench.py [--quick]

For each source, CPU time (``time.process_time``) per ``IdentityChain.identify`` call, in one
event loop, against the fake IdP of tests/fakes/idp.py (keys fetched once before timing; no
I/O while timing):

- *same token*: the proxy's assertion (or an apiKeyHelper's token) repeated, as on every
  request of a session: answered from the verified-token cache;
- *new token*: a token never seen before each time: the full signature check (ES256 or RS256);
- keys: a SQLite point lookup of the key's hash each time (``ttl_s=0``), and with the
  verifier's half-second cache (what the gateway uses); the same against a throwaway local
  PostgreSQL (tests/pg.py; skipped when its binaries are missing), where a lookup runs on the
  verifier's thread pool (its CPU counted: this process's, all threads), and the wall time of one
  lookup, printed under the table.

Target (issue 17): ≤ 0.1 ms CPU per check with cached keys. Prints one table; each figure is
the median of 5 rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.team.alb import ALBVerifier  # noqa: E402
from app.team.cloudflare import CloudflareVerifier  # noqa: E402
from app.team.iap import IAPVerifier  # noqa: E402
from app.team.identity import IdentityChain  # noqa: E402
from app.team.keys import KeysVerifier  # noqa: E402
from app.team.keystore_sqlite import SqliteKeyStore  # noqa: E402
from app.team.oidc import OIDCVerifier  # noqa: E402
from tests.fakes.idp import FakeIdP  # noqa: E402

IAP_AUD = "/projects/123456789/global/backendServices/987654321"
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"
CF_AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
TARGET_US = 100.0


async def cpu_us(chain: IdentityChain, headers: list[dict[str, str]], rounds: int = 5) -> float:
    """Median over rounds of the CPU µs per identify() call, going through ``headers`` in order."""
    await chain.identify(headers[0])  # warm: keys fetched, code paths hot
    per_round = []
    for _ in range(rounds):
        t = time.process_time()
        for h in headers:
            await chain.identify(h)
        per_round.append((time.process_time() - t) / len(headers) * 1e6)
    return statistics.median(per_round)


async def measure(idp: FakeIdP, n_same: int, n_new: int) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    sources: list[tuple[str, Any, str, Callable[[int], str]]] = [
        ("iap", IAPVerifier(IAP_AUD, jwks_url=idp.iap_jwks_url), "x-goog-iap-jwt-assertion",
         lambda i: idp.iap_token(f"u{i}@corp.example", aud=IAP_AUD)),
        ("alb", ALBVerifier(ARN, keys_url=idp.alb_keys_url), "x-amzn-oidc-data",
         lambda i: idp.alb_token(f"u{i}@corp.example", signer=ARN)),
        ("cloudflare", CloudflareVerifier("corp", CF_AUD, certs_url=idp.cloudflare_certs_url),
         "cf-access-jwt-assertion", lambda i: idp.cloudflare_token(f"u{i}@corp.example", aud=CF_AUD)),
        ("oidc", OIDCVerifier(idp.oidc_issuer, "patchbay"), "authorization",
         lambda i: "Bearer " + idp.oidc_token(f"u{i}@corp.example", aud="patchbay", groups=["eng"])),
    ]
    for name, verifier, header, token in sources:
        chain = IdentityChain([verifier])
        alg = "ES256" if name in ("iap", "alb") else "RS256"
        same = [{header: token(0)}] * n_same
        new = [{header: token(i)} for i in range(1, n_new * 5 + 2)]
        rows.append((name, "same token (verified-token cache)", await cpu_us(chain, same)))
        # each round sees tokens it has not seen: split the fresh tokens between the rounds
        await chain.identify(new[0])
        per_round = []
        for r in range(5):
            chunk = new[1 + r * n_new: 1 + (r + 1) * n_new]
            t = time.process_time()
            for h in chunk:
                await chain.identify(h)
            per_round.append((time.process_time() - t) / len(chunk) * 1e6)
        rows.append((name, f"new token each time ({alg} signature check)", statistics.median(per_round)))
        await chain.aclose()

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteKeyStore(Path(tmp) / "usage.sqlite3")
        for i in range(1000):  # a team's worth of keys in the table
            store.create(f"user{i}@corp.example", ("eng",))
        _, secret = store.create("alice@corp.example", ("eng",))
        headers = [{"authorization": f"Bearer {secret}"}] * n_same
        rows.append(("keys", "SQLite lookup every time (ttl 0)",
                     await cpu_us(IdentityChain([KeysVerifier(store, ttl_s=0.0)]), headers)))
        rows.append(("keys", "with the 0.5 s cache (default)",
                     await cpu_us(IdentityChain([KeysVerifier(store)]), headers)))
        chain = IdentityChain([IAPVerifier(IAP_AUD, jwks_url=idp.iap_jwks_url),
                               OIDCVerifier(idp.oidc_issuer, "patchbay"), KeysVerifier(store)])
        rows.append(("iap, oidc, keys", "a team key, third in the chain",
                     await cpu_us(chain, headers)))
        await chain.aclose()
        store.close()
    rows += await pg_rows(n_same)
    return rows


async def pg_rows(n: int) -> list[tuple[str, str, float]]:
    from app.team.keystore_pg import PgKeyStore
    from tests.pg import PgServer, pg_bindir

    if pg_bindir() is None:
        return []
    server = PgServer().start()
    try:
        store = PgKeyStore(server.create_db())
        for i in range(1000):
            store.create(f"user{i}@corp.example", ("eng",))
        _, secret = store.create("alice@corp.example", ("eng",))
        headers = [{"authorization": f"Bearer {secret}"}] * min(n, 2000)
        every = IdentityChain([KeysVerifier(store, ttl_s=0.0)])
        rows = [("keys (PostgreSQL)", "lookup every time (ttl 0)", await cpu_us(every, headers)),
                ("keys (PostgreSQL)", "with the 0.5 s cache (default)",
                 await cpu_us(IdentityChain([KeysVerifier(store)]), headers * 10))]
        walls = []
        for _ in range(min(n, 2000)):
            t = time.perf_counter()
            store.lookup(secret)
            walls.append((time.perf_counter() - t) * 1e6)
        WALL.append(statistics.median(walls))
        await every.aclose()
        store.close()
        return rows
    finally:
        server.destroy()


WALL: list[float] = []  # the median wall µs of one PgKeyStore.lookup, when measured


def main() -> None:
    quick = "--quick" in sys.argv
    n_same, n_new = (2000, 100) if quick else (20000, 400)
    with FakeIdP() as idp:
        rows = asyncio.run(measure(idp, n_same, n_new))
    print(f"Identity check, CPU per request (median of 5 rounds; target ≤ {TARGET_US:.0f} µs with cached keys)\n")
    print("| source | case | CPU µs per check | within target |")
    print("|---|---|---:|---|")
    for source, case, us in rows:
        print(f"| {source} | {case} | {us:.1f} | {'yes' if us <= TARGET_US else 'NO'} |")
    if WALL:
        print(f"\nOne PgKeyStore.lookup (one indexed SELECT, one round trip over loopback): {WALL[0]:.0f} µs wall "
              "(median).")


if __name__ == "__main__":
    main()
