"""Team keys on the shared PostgreSQL ledger, end to end: two ``patchbay serve`` processes with
``[team] identity = ["keys"]`` on one database, and the admin's real ``patchbay team key`` CLI
(another machine's shell: its own PATCHBAY_HOME, the same config).

- ``team key create`` prints a key; the official SDK with it succeeds on both instances, and the
  ledger rows name the user.
- ``team key revoke ID`` while both instances keep serving the key (their caches fresh: the
  worst case); both answer 401 ``authentication_error`` within one second of the revocation's
  ``revoked_at`` (measured, printed).
- ``team audit --json`` lists key.created and key.revoked with the admin as actor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import psycopg
import pytest

from tests.e2e.conftest import REPO, _base_env, spawn_gateway
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import serve_config

pytestmark = [pytest.mark.e2e]

TOKEN = "pb-team-token"  # the single-user gateway token: no identity in team mode
ALICE = "alice@corp.example"
BODY = {"model": "priced", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def upstream():
    up = FakeUpstream(lambda req: AnthropicStream(
        anthropic_text_events("hi there", pieces=2, model="priced", usage=(12, 3, 0, 0))),
        wire="anthropic", record=False).start()
    yield up
    up.stop()


def ask(client: anthropic.Anthropic) -> str:
    with client.messages.stream(**BODY) as s:  # type: ignore[arg-type]
        reply = s.get_final_message()
    return "".join(b.text for b in reply.content if b.type == "text")


def admin_cli(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``patchbay team …`` as the admin runs it: a shell of its own, the gateways' config."""
    home.mkdir(parents=True, exist_ok=True)
    env = _base_env() | {"PATCHBAY_HOME": str(home)}
    env.pop("PATCHBAY_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "app", "team", *args, "--config", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_key_made_by_the_cli_works_on_both_instances_and_its_revocation_reaches_both_within_a_second(
        tmp_path: Path, pg_server: object, upstream: FakeUpstream) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    text = serve_config(upstream.url, port0=False, ledger_url=url, extra='\n[team]\nidentity = ["keys"]\n')
    gws = [spawn_gateway(text, tmp_path / f"home-{i}", token=TOKEN) for i in range(2)]
    admin = tmp_path / "admin"
    config = tmp_path / "team.toml"
    config.write_text(text)
    try:
        made = admin_cli(admin, config, "key", "create", ALICE, "--group", "eng")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("pbk_") and "\n" not in secret
        key_id = made.stderr.split("team key ")[1].split()[0]
        assert not (admin / "data" / "usage.sqlite3").exists(), "the admin's keys went to the shared database"

        clients = [anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0) for gw in gws]
        for c in clients:
            assert ask(c) == "hi there"
        with pytest.raises(anthropic.AuthenticationError):  # the gateway token is no person
            ask(anthropic.Anthropic(base_url=gws[0].url, api_key=TOKEN, max_retries=0))

        listed = admin_cli(admin, config, "key", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(k["id"], k["user"], k["status"]) for k in json.loads(listed.stdout)] == [(key_id, ALICE, "active")]

        # both instances keep serving the key right up to the revocation (their caches are fresh:
        # the worst case), each until its first 401
        refused_at: dict[int, float] = {}
        errors: list[BaseException] = []

        def hammer(k: int) -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    ask(clients[k])
                except anthropic.AuthenticationError as exc:
                    refused_at[k] = time.time()
                    body = exc.body
                    try:
                        assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"
                        assert key_id in body["error"]["message"] and "revoked" in body["error"]["message"]
                        assert secret not in exc.response.text
                    except AssertionError as bad:
                        errors.append(bad)
                    return
                except Exception as exc:  # noqa: BLE001 - anything else fails the test below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(len(clients))]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert not refused_at and not errors, (refused_at, errors)
        started = time.monotonic()
        revoked = admin_cli(admin, config, "key", "revoke", key_id)
        t0 = time.monotonic()
        assert revoked.returncode == 0, revoked.stderr
        assert "Revoked the team key" in revoked.stdout and "PostgreSQL ledger" in revoked.stdout
        for t in threads:
            t.join(25)
        assert not errors, errors
        assert len(refused_at) == len(clients), f"still accepted after 20 s: {refused_at}"
        with psycopg.connect(url) as conn:  # when the CLI revoked it (its clock is this machine's)
            revoked_at = conn.execute("SELECT revoked_at FROM team_keys WHERE id = %s", (key_id,)).fetchone()[0]  # type: ignore[index]
        refused_after = {k: at - revoked_at for k, at in refused_at.items()}
        slowest = max(refused_after.values())
        print(f"\nrevoked key refused by instance 1 {refused_after[0] * 1000:.0f} ms, by instance 2 "
              f"{refused_after[1] * 1000:.0f} ms after the revocation (the CLI ran {(t0 - started) * 1000:.0f} ms)")
        assert slowest < 1.0, f"a revoked key still worked {slowest:.2f} s later"

        audit = admin_cli(admin, config, "audit", "--json")
        assert audit.returncode == 0, audit.stderr
        entries = json.loads(audit.stdout)
        keyed = [(e["action"], e["subject"], e["detail"].get("user")) for e in entries if e["action"].startswith("key.")]
        assert keyed == [("key.created", key_id, ALICE), ("key.revoked", key_id, ALICE)]
        actor = next(e["actor"] for e in entries if e["action"] == "key.created")
        assert actor.endswith("@" + os.uname().nodename) and all(
            e["actor"] == actor for e in entries if e["action"].startswith("key."))
        assert [e["action"] for e in entries].count("config.loaded") == 1  # two instances, one policy
        assert secret not in audit.stdout
    finally:
        for gw in gws:
            gw.stop()  # SIGTERM: finish, flush the ledger, exit
    for gw in gws:
        assert gw.proc.returncode == 0, gw.log()
        assert secret not in gw.log()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT instance, user_id, groups, identity_source, status FROM requests "
                            "WHERE status = 200 ORDER BY started_at").fetchall()
        stored = conn.execute("SELECT count(*) FROM requests WHERE error_message LIKE %s OR user_id LIKE %s",
                              (f"%{secret}%", f"%{secret}%")).fetchone()
    assert len({r[0] for r in rows}) == 2, rows  # both instances answered and recorded it
    assert all(r[1] == ALICE and "eng" in (r[2] or "") and r[3] == "keys" for r in rows), rows
    assert stored == (0,)
