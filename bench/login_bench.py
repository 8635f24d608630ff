"""What checking a Patchbay sign-in token costs per request (``[team.login]``'s ``LoginVerifier``).

    .venv/bin/python bench/login_bench.py [--quick]

CPU time (``time.process_time``) per ``LoginVerifier.verify`` call in one event loop, on a SQLite
ledger file in a temporary folder (one signed-in session):

- *repeated token*: the same access token again, as Claude Code sends it on every request: the
  verified-token cache and the sign-in's cached state (refreshed from the database every 0.5 s;
  the refresh is counted, at its real rate, since the loop runs for seconds);
- *first-seen token*: a freshly minted token each time: HS256 check by PyJWT, the claims, the cache.

Target (issue 23): ≤ 10 µs CPU for a repeated token. Each figure is the median of 5 rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.team.login.store import SqliteLoginStore, new_session_id  # noqa: E402
from app.team.login.tokens import Signer, new_refresh_token  # noqa: E402
from app.team.login.verifier import LoginVerifier  # noqa: E402


def _session(store: SqliteLoginStore) -> str:
    sid = new_session_id()
    store.new_device("dev", "BCDF-GHJK", time.time() + 600, 5)
    dev = store.device(device_code="dev")
    assert dev is not None
    store.settle(dev.device_hash, "approved", "alice@corp.example", ["eng"])
    dev = store.device(device_code="dev")
    assert dev is not None and store.consume(dev, sid, new_refresh_token(), time.time() + 3600)
    return sid


async def _round(verifier: LoginVerifier, headers: list[dict[str, str]], n: int) -> float:
    t0 = time.process_time()
    for i in range(n):
        await verifier.verify(headers[i % len(headers)])
    return (time.process_time() - t0) / n


def main() -> None:
    quick = "--quick" in sys.argv
    n = 20_000 if quick else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteLoginStore(Path(tmp) / "usage.sqlite3")
        kid, key = store.signing_key()
        signer = Signer(kid, key, "https://patchbay.corp.example")
        sid = _session(store)
        verifier = LoginVerifier(store, lambda: signer)
        token, _ = signer.mint(sid, "alice@corp.example", ["eng"])
        repeated = [{"authorization": f"Bearer {token}"}]
        fresh = [{"authorization": f"Bearer {signer.mint(sid, 'alice@corp.example', ['eng'])[0]}"}
                 for _ in range(2_000 if quick else 20_000)]

        async def run() -> tuple[list[float], list[float]]:
            await verifier.verify(repeated[0])
            rep = [await _round(verifier, repeated, n) for _ in range(5)]
            first = []
            for _ in range(5):
                verifier._tokens.clear()
                first.append(await _round(verifier, fresh, len(fresh)))
            return rep, first

        rep, first = asyncio.run(run())
        store.close()
    print(f"repeated token:   {statistics.median(rep) * 1e6:6.2f} µs CPU per check (target ≤ 10 µs)")
    print(f"first-seen token: {statistics.median(first) * 1e6:6.2f} µs CPU per check")


if __name__ == "__main__":
    main()
