"""Claude Code's gateway sign-in on a real in-process gateway (real port, SQLite ledger) against the
fake OIDC issuer (tests/fakes/oidc_issuer.py), driven as the CLI drives it (form posts, no client_id)
and as a browser does (tests/fakes/browser.py), then used with the official ``anthropic`` SDK.

Each case of the issue: the device flow and its answers, refresh rotation and reuse detection,
revocation, an expired token, a forged token, a wrong ``state``, a replayed device code, the IdP
down; every 401 for a bearer of ours carries ``x-should-retry: false`` and Anthropic's error shape,
and no token or code appears in an answer, the log or the ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jwt
import pytest

from app.config import ConfigError, parse_config
from app.core import Engine
from app.team.login.tokens import Signer
from tests.fakes.browser import Browser
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.oidc_issuer import FakeIssuer
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import serve_config, start_engine
from tests.team.signin_setup import SECRET_ENV, free_port, login_team, poll, sign_in

ALICE = "alice@corp.example"


class Gw:
    def __init__(self, engine: Engine, url: str, issuer: FakeIssuer) -> None:
        self.engine, self.url, self.issuer = engine, url, issuer
        self.http = httpx.Client(base_url=url, timeout=15, trust_env=False)

    def ask(self, token: str) -> httpx.Response:
        return self.http.post("/v1/messages", headers={"authorization": f"Bearer {token}"},
                              json={"model": "priced", "max_tokens": 16,
                                    "messages": [{"role": "user", "content": "hi"}]})

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token})


@pytest.fixture
def gw(patchbay_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gw]:
    monkeypatch.setenv(SECRET_ENV, "s3cret-of-the-client")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi there", model="priced",
                                                                         usage=(12, 3, 0, 0))),
                      wire="anthropic", record=False).start()
    with FakeIssuer(redirect_uri=f"{url}/oauth/callback") as issuer:
        text = serve_config(up.url, port0=False) + f"\n[gateway]\nport = {port}\n" + login_team(issuer, url)
        eng = start_engine(patchbay_home, text)
        try:
            yield Gw(eng, url, issuer)
        finally:
            eng.stop()
            up.stop()


def assert_refused(resp: httpx.Response, *words: str, secret: str = "") -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers.get("x-should-retry") == "false"
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error" and body["request_id"]
    for w in words:
        assert w in body["error"]["message"], body
    assert "bug" not in resp.text.lower()
    if secret:
        assert secret not in resp.text


def test_the_device_flow_signs_alice_in_and_her_token_works_with_the_sdk(gw: Gw, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    doc = gw.http.get("/.well-known/oauth-authorization-server").json()
    assert doc["token_endpoint"] == f"{gw.url}/oauth/token" and doc["revocation_endpoint"] == f"{gw.url}/oauth/revoke"
    assert "authorization_endpoint" not in doc
    dev = gw.http.post("/oauth/device_authorization", data={"surface": "claude_code"})
    assert dev.status_code == 200 and dev.headers["cache-control"] == "no-store"
    d = dev.json()
    assert len(d["device_code"]) >= 43 and d["interval"] == 5 and d["expires_in"] == 600
    assert d["verification_uri_complete"] == f"{gw.url}/device?user_code={d['user_code']}"
    pending = poll(gw.http, gw.url, d["device_code"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    too_soon = poll(gw.http, gw.url, d["device_code"])
    assert (too_soon.status_code, too_soon.json()["error"]) == (429, "slow_down")

    browser = Browser()
    page = browser.http.get(d["verification_uri_complete"])
    assert d["user_code"] in page.text and "<form" in page.text  # pre-filled, not submitted
    done = browser.sign_in(d["verification_uri_complete"])
    browser.close()
    assert done.status_code == 200 and f"signed in as {ALICE}" in done.text
    authorize = next(u for u in browser.visited if "/authorize?" in u)
    for part in ("code_challenge_method=S256", "nonce=", "state=", "client_id=gw-client"):
        assert part in authorize
    time.sleep(9.5)  # the interval grew to 10 s after the slow_down
    got = poll(gw.http, gw.url, d["device_code"])
    assert got.status_code == 200, got.text
    tokens = got.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["refresh_token"].startswith("pbr_")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == ALICE and claims["groups"] == ["eng"] and claims["iss"] == gw.url

    client = anthropic.Anthropic(base_url=gw.url, auth_token=tokens["access_token"], api_key=None, max_retries=0)
    with client.messages.stream(model="priced", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
        reply = s.get_final_message()
    assert reply.content[0].type == "text" and reply.content[0].text == "hi there"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("patchbay"))
    assert "approved a device code" in logged
    for secret in (tokens["access_token"], tokens["refresh_token"], d["device_code"]):
        assert secret not in logged


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_sign_in(gw: Gw) -> None:
    first = sign_in(gw.url)
    second = gw.refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"] and new["access_token"] != first["access_token"]
    assert gw.ask(new["access_token"]).status_code == 200
    reused = gw.refresh(first["refresh_token"])  # the old one again: stolen, or replayed
    assert reused.status_code == 401 and reused.json()["error"] == "invalid_grant"
    assert "already used" in reused.json()["error_description"]
    assert gw.refresh(new["refresh_token"]).json()["error"] == "invalid_grant"  # the whole family is dead
    time.sleep(0.6)  # past the verifier's 0.5 s cache of the sign-in
    assert_refused(gw.ask(new["access_token"]), "revoked", "refresh token was used twice",
                   secret=new["access_token"])
    assert_refused(gw.ask(first["access_token"]), "revoked")


def test_revocation_by_the_client_ends_the_sign_in_within_a_second(gw: Gw) -> None:
    t = sign_in(gw.url)
    assert gw.ask(t["access_token"]).status_code == 200
    out = gw.http.post("/oauth/revoke", data={"token": t["access_token"]})
    assert out.status_code == 200
    revoked_at = time.monotonic()
    while gw.ask(t["access_token"]).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after the revocation"
        time.sleep(0.05)
    assert_refused(gw.ask(t["access_token"]), "revoked", "signed out")
    assert gw.refresh(t["refresh_token"]).json()["error"] == "invalid_grant"
    assert gw.http.post("/oauth/revoke", data={"token": "nonsense"}).status_code == 200  # RFC 7009 §2.2


def _signer(gw: Gw) -> Signer:
    login = gw.engine._login
    assert login is not None
    return login.signer()


def test_an_expired_token_is_refused_with_x_should_retry_false(gw: Gw) -> None:
    t = sign_in(gw.url)
    sid = jwt.decode(t["access_token"], options={"verify_signature": False})["sid"]
    old, _ = _signer(gw).mint(sid, ALICE, ["eng"], ttl_s=60, now=time.time() - 3600)
    assert_refused(gw.ask(old), "expired", secret=old)


def test_a_forged_token_is_refused(gw: Gw) -> None:
    t = sign_in(gw.url)
    real = jwt.decode(t["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(t["access_token"])["kid"]
    forged = jwt.encode(real | {"sub": "mallory@corp.example", "groups": ["admins"]}, b"x" * 32, algorithm="HS256",
                        headers={"kid": kid})
    assert_refused(gw.ask(forged), "forged", secret=forged)
    other_key = jwt.encode(real, b"y" * 32, algorithm="HS256", headers={"kid": "pbl-000000000000"})
    assert_refused(gw.ask(other_key), "not signed by this gateway")
    unsigned = jwt.encode(real, None, algorithm="none", headers={"kid": kid})  # type: ignore[arg-type]
    assert_refused(gw.ask(unsigned), "not signed by this gateway")
    no_kid = jwt.encode(real, b"z" * 32, algorithm="HS256")  # our shape without our key id
    assert_refused(gw.ask(no_kid), "not signed by this gateway")
    assert_refused(gw.ask("garbage-bearer"), "neither a sign-in token")


def test_a_wrong_state_or_another_browser_cannot_finish_a_sign_in(gw: Gw) -> None:
    d = gw.http.post("/oauth/device_authorization", data={"surface": "claude_code"}).json()
    b = Browser()
    b.http.follow_redirects = False
    page = b.http.get(d["verification_uri_complete"])
    assert page.status_code == 200
    no_origin = b.http.post(f"{gw.url}/device", data={"user_code": d["user_code"]})
    assert no_origin.status_code == 403  # a cross-site form post is refused
    go = b.http.post(f"{gw.url}/device", data={"user_code": d["user_code"]}, headers={"origin": gw.url})
    assert go.status_code == 302 and "pb_login=" in go.headers["set-cookie"]
    at_idp = b.http.get(go.headers["location"])
    back = at_idp.headers["location"]
    assert back.startswith(f"{gw.url}/oauth/callback?") and "state=" in back
    wrong = b.http.get(back.replace("state=", "state=x"))
    assert wrong.status_code == 400 and "state is wrong" in wrong.text
    with httpx.Client(trust_env=False) as other:  # the right state in a browser without the cookie
        assert "another browser" in other.get(back).text
    ok = b.http.get(back)
    assert ok.status_code == 200 and "signed in as" in ok.text
    again = b.http.get(back)  # the same answer replayed
    assert again.status_code == 400 and "state is wrong" in again.text
    b.close()


def test_a_replayed_device_code_is_refused_and_revokes_what_it_bought(gw: Gw) -> None:
    t = sign_in(gw.url)
    assert gw.ask(t["access_token"]).status_code == 200
    replay = poll(gw.http, gw.url, t["device_code"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    time.sleep(0.6)
    assert_refused(gw.ask(t["access_token"]), "revoked")
    unknown = poll(gw.http, gw.url, "not-a-code")
    assert unknown.json()["error"] == "expired_token"


def test_denied_in_the_browser_and_at_the_idp(gw: Gw) -> None:
    for how in ("page", "idp"):
        d = gw.http.post("/oauth/device_authorization", data={}).json()
        b = Browser()
        if how == "page":
            r = b.http.post(f"{gw.url}/device/deny", data={"user_code": d["user_code"]}, headers={"origin": gw.url})
        else:
            gw.issuer.deny_next = True
            r = b.sign_in(d["verification_uri_complete"])
        b.close()
        assert r.status_code == 200 and "denied" in r.text.lower()
        assert poll(gw.http, gw.url, d["device_code"]).json()["error"] == "access_denied"


def test_the_idp_down_is_a_clear_503_page_not_a_patchbay_bug(gw: Gw) -> None:
    gw.issuer.down = True
    d = gw.http.post("/oauth/device_authorization", data={"surface": "claude_code"}).json()
    r = Browser().sign_in(d["verification_uri_complete"])
    assert r.status_code == 503
    assert "sign-in service" in r.text and "cannot be reached" in r.text and "bug" not in r.text.lower()
    assert poll(gw.http, gw.url, d["device_code"]).json()["error"] == "authorization_pending"
    gw.issuer.down = False  # back: the same code can still be finished
    assert "signed in as" in Browser().sign_in(d["verification_uri_complete"]).text


def test_team_login_config_errors_are_sentences(tmp_path: Path) -> None:
    base = serve_config("http://127.0.0.1:9")
    cases = {
        '[team]\nidentity = ["keys"]\n[team.login]\nclient_id = "c"\npublic_url = "https://gw.example"\n':
            "names none",
        '[team]\nidentity = ["oidc"]\noidc_issuer = "https://idp.example"\noidc_audience = "c"\n'
        '[team.login]\nclient_id = "c"\npublic_url = "http://gw.example"\n': "public_url",
        '[team]\nidentity = ["oidc"]\noidc_issuer = "https://idp.example"\noidc_audience = "c"\n'
        '[team.login]\nclient_id = "c"\npublic_url = "https://gw.example"\nclient_secret = "hunter2"\n':
            "secret forms",
        '[team]\nidentity = ["oidc"]\noidc_issuer = "https://idp.example"\noidc_audience = "c"\n'
        '[team.login]\npublic_url = "https://gw.example"\n': "client_id",
    }
    for extra, words in cases.items():
        with pytest.raises(ConfigError) as err:
            parse_config(base + extra)
        assert words in str(err.value)
    ok = parse_config(base + '[team]\nidentity = ["oidc"]\noidc_issuer = "https://idp.example"\n'
                      'oidc_audience = "c"\n[team.login]\nclient_id = "c"\npublic_url = "https://gw.example/"\n'
                      'client_secret = "env:X"\n')
    assert ok.team is not None and ok.team.login is not None
    assert (ok.team.login.public_url, ok.team.login.client_secret) == ("https://gw.example", "env:X")


def test_the_verification_page_stops_an_address_that_guesses_codes(gw: Gw) -> None:
    d = gw.http.post("/oauth/device_authorization", data={"surface": "claude_code"}).json()
    b = Browser()
    b.http.follow_redirects = False
    for i in range(10):
        r = b.http.post(f"{gw.url}/device", data={"user_code": f"BCDF-GH{i:02d}"}, headers={"origin": gw.url})
        assert r.status_code == 400 and "unknown" in r.text
    blocked = b.http.post(f"{gw.url}/device", data={"user_code": d["user_code"]}, headers={"origin": gw.url})
    assert blocked.status_code == 429 and "Too many wrong codes" in blocked.text
    b.close()


def test_the_admin_revokes_one_sign_in_by_id_with_the_team_cli(gw: Gw) -> None:
    import json
    import subprocess
    import sys

    from tests.e2e.conftest import REPO, _base_env

    keep, gone = sign_in(gw.url), sign_in(gw.url)
    ledger = str(gw.engine.paths.ledger_file)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "team", "login", *args, "--ledger", ledger], cwd=REPO,
                              env=_base_env() | {"PATCHBAY_HOME": str(gw.engine.paths.data_dir.parent / "admin")},
                              capture_output=True, text=True, timeout=60)

    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [s["id"] for s in json.loads(listed.stdout)]
    sid = jwt.decode(gone["access_token"], options={"verify_signature": False})["sid"]
    assert len(ids) == 2 and sid in ids
    out = cli("revoke", sid)
    assert out.returncode == 0 and sid in out.stdout, out.stderr
    time.sleep(0.6)
    assert_refused(gw.ask(gone["access_token"]), "revoked", sid)
    assert gw.ask(keep["access_token"]).status_code == 200  # the other sign-in goes on
    assert cli("revoke", sid).returncode == 2  # nothing left to revoke: said, not silent
    assert cli("revoke").returncode == 2


def test_the_idp_token_endpoint_down_at_the_callback_is_a_503_page_and_the_code_can_be_finished_later(
        gw: Gw) -> None:
    d = gw.http.post("/oauth/device_authorization", data={"surface": "claude_code"}).json()
    b = Browser()
    b.http.follow_redirects = False
    go = b.http.post(f"{gw.url}/device", data={"user_code": d["user_code"]}, headers={"origin": gw.url})
    back = b.http.get(go.headers["location"]).headers["location"]
    gw.issuer.down = True
    r = b.http.get(back)
    assert r.status_code == 503 and "cannot be reached" in r.text and "bug" not in r.text.lower()
    assert "code=" not in r.text and "state=" not in r.text
    gw.issuer.down = False
    b.http.follow_redirects = True
    assert "signed in as" in b.sign_in(d["verification_uri_complete"]).text
    b.close()
    assert poll(gw.http, gw.url, d["device_code"]).status_code == 200


def test_each_refresh_asks_the_idp_so_group_changes_arrive_and_a_removed_person_is_cut_off(gw: Gw) -> None:
    t = sign_in(gw.url)
    gw.issuer.groups = ["eng", "research"]  # changed at the IdP
    r = gw.refresh(t["refresh_token"])
    assert r.status_code == 200, r.text
    t2 = r.json()
    assert jwt.decode(t2["access_token"], options={"verify_signature": False})["groups"] == ["eng", "research"]
    path = gw.engine.paths.ledger_file
    ledger = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # the file and its WAL
    assert b"login_refresh" in ledger
    for idp_token in gw.issuer.refresh_tokens:  # kept sealed under the client's refresh token, never readable
        assert idp_token.encode() not in ledger

    gw.issuer.down = True  # the IdP cannot say: 503, the refresh token is not spent, the token keeps working
    down = gw.refresh(t2["refresh_token"])
    assert down.status_code == 503 and down.json()["error"] == "temporarily_unavailable"
    assert gw.ask(t2["access_token"]).status_code == 200
    gw.issuer.down = False
    t3 = gw.refresh(t2["refresh_token"])
    assert t3.status_code == 200, t3.text

    gw.issuer.removed.add(ALICE)  # left the company
    gone = gw.refresh(t3.json()["refresh_token"])
    assert gone.status_code == 401 and gone.json()["error"] == "invalid_grant"
    assert "no longer signs you in" in gone.json()["error_description"]
    time.sleep(0.6)
    assert_refused(gw.ask(t3.json()["access_token"]), "revoked", "no longer signs you in")


def test_old_device_codes_and_refresh_tokens_are_cleared_by_later_sign_ins(gw: Gw) -> None:
    import sqlite3

    first = sign_in(gw.url)
    db = sqlite3.connect(gw.engine.paths.ledger_file)
    db.execute("UPDATE login_devices SET expires_at = expires_at - 2 * 86400")
    db.execute("UPDATE login_refresh SET expires_at = 0")
    db.commit()
    sign_in(gw.url)
    devices = db.execute("SELECT count(*) FROM login_devices").fetchone()[0]
    refresh = db.execute("SELECT count(*) FROM login_refresh").fetchone()[0]
    db.close()
    assert (devices, refresh) == (1, 1)
    assert gw.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"  # past its end: unknown


def test_the_idps_own_tokens_still_identify_through_the_oidc_source_beside_sign_ins(gw: Gw) -> None:
    import jwt as pyjwt

    now = int(time.time())
    claims = {"iss": gw.issuer.url, "aud": gw.issuer.client_id, "sub": "sub-bob", "email": "bob@corp.example",
              "email_verified": True, "groups": ["eng"], "iat": now, "exp": now + 600}
    for typ in ("JWT", "at+jwt"):  # an ID token, and an IdP access token shaped per RFC 9068
        token = pyjwt.encode(claims, gw.issuer.key.private, algorithm="RS256",
                             headers={"kid": gw.issuer.key.kid, "typ": typ})
        assert gw.ask(token).status_code == 200
        expired = pyjwt.encode(claims | {"iat": now - 1200, "exp": now - 600}, gw.issuer.key.private,
                               algorithm="RS256", headers={"kid": gw.issuer.key.kid, "typ": typ})
        refused = gw.ask(expired)  # the oidc source's own sentence, not a sign-in's
        assert refused.status_code == 401 and "identity token" in refused.json()["error"]["message"], refused.text
