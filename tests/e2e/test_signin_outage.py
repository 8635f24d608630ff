"""Sign-in tokens while the shared PostgreSQL is away: as team keys (docs/team.md, "Outages").

Two ``patchbay serve`` with ``[team.login]`` on one PostgreSQL, one ``on_unreachable = "open"``, one
"closed". Alice signs in and uses her token on both; Bob signs in and is revoked (both have seen it).
With the database stopped: "open" keeps serving Alice from the last answer and keeps refusing Bob;
"closed" serves nobody, with 503 ``api_error`` and ``x-should-retry: false`` (never a 401: the token
may be fine). Once PostgreSQL answers again, "closed" serves Alice within two seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes.oidc_issuer import FakeIssuer
from tests.fakes.upstreams import FakeUpstream
from tests.pg import PgServer
from tests.serve_config import serve_config
from tests.team.signin_setup import SECRET_ENV, free_port, login_team, sign_in

pytestmark = [pytest.mark.e2e]


def ask(url: str, token: str) -> httpx.Response:
    with httpx.Client(timeout=15, trust_env=False) as http:
        return http.post(f"{url}/v1/messages", headers={"authorization": f"Bearer {token}"},
                         json={"model": "priced", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})


def test_sign_ins_through_a_database_outage_open_and_closed(tmp_path: Path, own_pg: PgServer,
                                                            priced_upstream: FakeUpstream) -> None:
    url = own_pg.create_db()
    ports = {"open": free_port(), "closed": free_port()}
    public = f"http://127.0.0.1:{ports['open']}"
    with FakeIssuer(redirect_uri=f"{public}/oauth/callback") as issuer:
        gws = {mode: spawn_gateway(serve_config(priced_upstream.url, port0=False, ledger_url=url,
                                                extra=f'on_unreachable = "{mode}"\n' + login_team(issuer, public)),
                                   tmp_path / f"home-{mode}", extra_args=("--port", str(port)),
                                   extra_env={SECRET_ENV: issuer.client_secret})
               for mode, port in ports.items()}
        try:
            alice = sign_in(public)["access_token"]
            issuer.user = "bob@corp.example"
            bob = sign_in(public)["access_token"]
            for gw in gws.values():
                assert ask(gw.url, alice).status_code == 200 and ask(gw.url, bob).status_code == 200, gw.log()
            with httpx.Client(trust_env=False) as http:
                assert http.post(f"{public}/oauth/revoke", data={"token": bob}).status_code == 200
            time.sleep(0.6)
            for gw in gws.values():
                assert ask(gw.url, bob).status_code == 401

            own_pg.stop()
            time.sleep(1.0)  # past the 0.5 s freshness: every answer below comes from the outage path
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                assert ask(gws["open"].url, alice).status_code == 200, gws["open"].log()
                assert ask(gws["open"].url, bob).status_code == 401
                closed = ask(gws["closed"].url, alice)
                assert closed.status_code == 503 and closed.headers["x-should-retry"] == "false", closed.text
                assert closed.json()["error"]["type"] == "api_error" and "not a problem with your sign-in" in \
                    closed.text
                time.sleep(0.2)
            assert "keep their last answer meanwhile" in gws["open"].log()

            own_pg.restart()
            t0 = time.monotonic()
            while ask(gws["closed"].url, alice).status_code != 200:
                assert time.monotonic() - t0 < 5.0, gws["closed"].log()
                time.sleep(0.05)
            took = time.monotonic() - t0
            print(f"\nthe closed gateway served the sign-in {took:.2f} s after PostgreSQL answered again")
            assert took < 2.0
        finally:
            for gw in gws.values():
                gw.stop()
