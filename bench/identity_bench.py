"""What the team identity check costs per request, with the signing keys already cached.

    .venv/bin/python bench/identity_bench.py [--quick] [--profile SOURCE]

CPU time (``time.process_time``) per ``IdentityChain.identify`` call, in one event loop, against
the fake IdP of tests/fakes/idp.py (keys fetched once before timing; no I/O while timing). Per
source:

- *repeated token*: the proxy's assertion (or an apiKeyHelper's token) sent again, as on every
  request of a session: answered from the verified-token cache;
- *first-seen token*: a token never seen before each time: the whole check (header, key by kid,
  PyJWT's parse, the ES256 or RS256 signature, the claims);
- *signature alone*: ``cryptography``'s ``public_key.verify`` on the same key and the same
  signing input, nothing else (for ES256 the signature is turned into DER beforehand): the floor
  no JWT library can go under;
- *overhead*: first-seen minus signature alone.

For ``keys`` the repeated case is the verifier's half-second cache (what the gateway uses), the
first-seen case a SQLite point lookup of the key's hash every time (``ttl_s=0``, 1,000 keys in
the table), and the floor the SHA-256 of the key.

Target (issue 17): ≤ 0.1 ms CPU per check with cached keys. Each figure is the median of 5
rounds. ``--profile iap`` (or alb, cloudflare, oidc) prints cProfile's top entries for that
source's first-seen path instead.
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402
from jwt.utils import raw_to_der_signature  # noqa: E402

from app.team.alb import ALBVerifier  # noqa: E402
from app.team.cloudflare import CloudflareVerifier  # noqa: E402
from app.team.iap import IAPVerifier  # noqa: E402
from app.team.identity import Headers, IdentityChain  # noqa: E402
from app.team.keys import KeysVerifier, key_hash  # noqa: E402
from app.team.keystore_sqlite import SqliteKeyStore  # noqa: E402
from app.team.oidc import OIDCVerifier  # noqa: E402
from tests.fakes.idp import FakeIdP  # noqa: E402

IAP_AUD = "/projects/123456789/global/backendServices/987654321"
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"
CF_AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
TARGET_US = 100.0
ROUNDS = 5


@dataclass
class Row:
    source: str
    alg: str
    repeated_us: float
    first_seen_us: float
    floor_us: float
    floor_what: str = "signature"


@dataclass
class Source:
    name: str
    realm: str
    make: Callable[[FakeIdP], Any]
    header: str
    token: Callable[[FakeIdP, int], str]
    prefix: str = ""


SOURCES = [
    Source("iap", "iap", lambda idp: IAPVerifier(IAP_AUD, jwks_url=idp.iap_jwks_url), "x-goog-iap-jwt-assertion",
           lambda idp, i: idp.iap_token(f"u{i}@corp.example", aud=IAP_AUD)),
    Source("alb", "alb", lambda idp: ALBVerifier(ARN, keys_url=idp.alb_keys_url), "x-amzn-oidc-data",
           lambda idp, i: idp.alb_token(f"u{i}@corp.example", signer=ARN)),
    Source("cloudflare", "cloudflare",
           lambda idp: CloudflareVerifier("corp", CF_AUD, certs_url=idp.cloudflare_certs_url),
           "cf-access-jwt-assertion", lambda idp, i: idp.cloudflare_token(f"u{i}@corp.example", aud=CF_AUD)),
    Source("oidc", "oidc", lambda idp: OIDCVerifier(idp.oidc_issuer, "patchbay"), "authorization",
           lambda idp, i: idp.oidc_token(f"u{i}@corp.example", aud="patchbay", groups=["eng"]), "Bearer "),
]


def median_us(run_round: Callable[[int], int]) -> float:
    """Median over ROUNDS of CPU µs per item; ``run_round(r)`` does round r and returns its item count."""
    per_round = []
    for r in range(ROUNDS):
        t = time.process_time()
        n = run_round(r)
        per_round.append((time.process_time() - t) / n * 1e6)
    return statistics.median(per_round)


async def identify_us(chain: IdentityChain, rounds: list[list[Headers]]) -> float:
    """Median CPU µs per identify() call; ``rounds[r]`` is the headers round r goes through."""
    per_round = []
    for headers in rounds:
        t = time.process_time()
        for h in headers:
            await chain.identify(h)
        per_round.append((time.process_time() - t) / len(headers) * 1e6)
    return statistics.median(per_round)


def signature_alone_us(idp: FakeIdP, realm: str, token: str, n: int) -> float:
    """``public_key.verify`` of ``token``'s signature, nothing else."""
    head, _, sig_b64 = token.rpartition(".")
    msg, sig = head.encode(), jwt.utils.base64url_decode(sig_b64.rstrip("="))
    key = idp.current(realm).public
    verify: Callable[[], None]
    if isinstance(key, ec.EllipticCurvePublicKey):
        der = raw_to_der_signature(sig, key.curve)
        verify = lambda: key.verify(der, msg, ec.ECDSA(hashes.SHA256()))  # noqa: E731
    else:
        verify = lambda: key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())  # noqa: E731
    verify()  # a wrong signature raises here, before any timing

    def one_round(_: int) -> int:
        for _ in range(n):
            verify()
        return n

    return median_us(one_round)


def fresh_tokens(idp: FakeIdP, src: Source, n: int, start: int) -> list[list[Headers]]:
    """ROUNDS lists of n headers, each with a token no round has seen."""
    return [[{src.header: src.prefix + src.token(idp, start + r * n + i)} for i in range(n)] for r in range(ROUNDS)]


async def measure_source(idp: FakeIdP, src: Source, n_same: int, n_new: int) -> Row:
    chain = IdentityChain([src.make(idp)])
    try:
        warm = {src.header: src.prefix + src.token(idp, 0)}
        await chain.identify(warm)  # keys fetched, code paths hot
        repeated = await identify_us(chain, [[warm] * n_same] * ROUNDS)
        first_seen = await identify_us(chain, fresh_tokens(idp, src, n_new, 1))
    finally:
        await chain.aclose()
    alg = "ES256" if idp.current(src.realm).alg == "ES256" else "RS256"
    return Row(src.name, alg, repeated, first_seen, signature_alone_us(idp, src.realm, src.token(idp, 0), n_new))


async def measure_keys(n_same: int) -> tuple[Row, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteKeyStore(Path(tmp) / "usage.sqlite3")
        try:
            for i in range(1000):  # a team's worth of keys in the table
                store.create(f"user{i}@corp.example", ("eng",))
            _, secret = store.create("alice@corp.example", ("eng",))
            headers: list[Headers] = [{"authorization": f"Bearer {secret}"}] * n_same
            cached = IdentityChain([KeysVerifier(store)])
            await cached.identify(headers[0])
            repeated = await identify_us(cached, [headers] * ROUNDS)
            uncached = IdentityChain([KeysVerifier(store, ttl_s=0.0)])
            await uncached.identify(headers[0])
            lookup = await identify_us(uncached, [headers] * ROUNDS)

            def hashes_round(_: int) -> int:
                for _ in range(n_same):
                    key_hash(secret)
                return n_same

            floor = median_us(hashes_round)
            # a key third in a chain: the JWT sources look at the bearer first and pass it on
            with FakeIdP() as idp:
                chain = IdentityChain([IAPVerifier(IAP_AUD, jwks_url=idp.iap_jwks_url),
                                       OIDCVerifier(idp.oidc_issuer, "patchbay"), KeysVerifier(store)])
                await chain.identify(headers[0])
                third = await identify_us(chain, [headers] * ROUNDS)
                await chain.aclose()
        finally:
            store.close()
    assert hashlib.sha256(secret.encode()).hexdigest() == key_hash(secret)
    return Row("keys", "SHA-256 + SQLite", repeated, lookup, floor, "SHA-256 of the key"), third


async def measure_pg_keys(n: int) -> Row | None:
    """The same for keys in a throwaway local PostgreSQL (tests/pg.py; None when its binaries are
    missing): a lookup runs on the verifier's thread pool, its CPU counted (this process, all
    threads). Also notes the wall time of one lookup in WALL."""
    from app.team.keystore_pg import PgKeyStore
    from tests.pg import PgServer, pg_bindir

    if pg_bindir() is None:
        return None
    server = PgServer().start()
    try:
        store = PgKeyStore(server.create_db())
        for i in range(1000):
            store.create(f"user{i}@corp.example", ("eng",))
        _, secret = store.create("alice@corp.example", ("eng",))
        headers: list[Headers] = [{"authorization": f"Bearer {secret}"}] * min(n, 2000)
        cached = IdentityChain([KeysVerifier(store)])
        await cached.identify(headers[0])
        repeated = await identify_us(cached, [headers * 5] * ROUNDS)
        every = IdentityChain([KeysVerifier(store, ttl_s=0.0)])
        await every.identify(headers[0])
        lookup = await identify_us(every, [headers] * ROUNDS)
        walls = []
        for _ in range(min(n, 2000)):
            t = time.perf_counter()
            store.lookup(secret)
            walls.append((time.perf_counter() - t) * 1e6)
        WALL.append(statistics.median(walls))
        await every.aclose()
        await cached.aclose()
        store.close()

        def hashes_round(_: int) -> int:
            for _ in range(n):
                key_hash(secret)
            return n

        return Row("keys (PostgreSQL)", "SHA-256 + SELECT", repeated, lookup, median_us(hashes_round),
                   "SHA-256 of the key")
    finally:
        server.destroy()


WALL: list[float] = []  # the median wall µs of one PgKeyStore.lookup, when measured


async def measure(idp: FakeIdP, n_same: int, n_new: int) -> tuple[list[Row], float]:
    rows = [await measure_source(idp, src, n_same, n_new) for src in SOURCES]
    keys, third = await measure_keys(n_same)
    pg = await measure_pg_keys(n_same)
    return rows + [keys] + ([pg] if pg is not None else []), third


async def profile(idp: FakeIdP, name: str, n: int) -> None:
    src = next(s for s in SOURCES if s.name == name)
    chain = IdentityChain([src.make(idp)])
    await chain.identify({src.header: src.prefix + src.token(idp, 0)})
    headers = fresh_tokens(idp, src, n, 1)[0]
    prof = cProfile.Profile()
    prof.enable()
    for h in headers:
        await chain.identify(h)
    prof.disable()
    await chain.aclose()
    print(f"cProfile of {n} first-seen {name} checks (times are inflated by the profiler):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def mark(us: float) -> str:
    return "yes" if us <= TARGET_US else "NO"


def main() -> None:
    quick = "--quick" in sys.argv
    n_same, n_new = (2000, 100) if quick else (20000, 400)
    with FakeIdP() as idp:
        if "--profile" in sys.argv:
            asyncio.run(profile(idp, sys.argv[sys.argv.index("--profile") + 1], n_new * 5))
            return
        rows, third = asyncio.run(measure(idp, n_same, n_new))
    print(f"Identity check, CPU µs per request (median of {ROUNDS} rounds; target ≤ {TARGET_US:.0f} µs with "
          "cached keys)\n")
    print("| source | signature | repeated token | first-seen token | signature alone (floor) | "
          "first-seen overhead | repeated within target | first-seen within target |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        floor = f"{r.floor_us:.1f}" + ("" if r.floor_what == "signature" else f" ({r.floor_what})")
        print(f"| {r.source} | {r.alg} | {r.repeated_us:.1f} | {r.first_seen_us:.1f} | {floor} | "
              f"{r.first_seen_us - r.floor_us:.1f} | {mark(r.repeated_us)} | {mark(r.first_seen_us)} |")
    print(f"\nA team key third in the chain [iap, oidc, keys], repeated: {third:.1f} µs ({mark(third)}).")
    print("keys: repeated = the 0.5 s cache; first-seen = a SQLite (or PostgreSQL) lookup every time (ttl 0).")
    if WALL:
        print(f"One PgKeyStore.lookup (one indexed SELECT, one round trip over loopback): {WALL[0]:.0f} µs wall "
              "(median).")


if __name__ == "__main__":
    main()
