"""deploy/: the Dockerfile, compose.yaml and the Cloud Run service, checked by parsing them
(no container runtime here): what a team gateway needs, and nothing it must not have."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML

from app.config.disk import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def yaml(name: str) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load((DEPLOY / name).read_text())


def test_the_dockerfile_is_slim_non_root_without_qt_and_checks_health() -> None:
    ins = dockerfile()
    names = [i for i, _ in ins]
    assert set(names) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT",
                          "CMD", "ARG", "LABEL"}
    [base] = [a for i, a in ins if i == "FROM"]
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base)
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert names.index("USER") < names.index("ENTRYPOINT")
    installs = " ".join(a for i, a in ins if i == "RUN" and "pip install" in a)
    assert "pip install" in installs and "[gui]" not in installs and "PySide6" not in installs
    [health] = [a for i, a in ins if i == "HEALTHCHECK"]
    assert "/health" in health and "CMD" in health
    assert "PATCHBAY_TOKEN" in health  # bound beyond loopback, /health needs the gateway token
    [entry] = [a for i, a in ins if i == "ENTRYPOINT"]
    argv = shlex.split(entry.strip("[]").replace('", "', " ").replace('"', ""))
    assert argv[:2] == ["patchbay", "serve"] and argv[argv.index("--port") + 1] == "8787"
    assert any(i == "EXPOSE" and a == "8787" for i, a in ins)
    for _, a in ins:  # no secret baked into the image
        assert not re.search(r"(?i)(password|token|secret)\s*=", a)


def test_the_image_config_is_a_valid_team_config_without_secrets() -> None:
    cfg = load_config(DEPLOY / "config.toml")
    assert cfg.gateway.port == 8787 and cfg.gateway.host == "0.0.0.0"
    assert cfg.ledger.team.url == "postgresql://patchbay@db:5432/patchbay"
    assert cfg.ledger.team.password.startswith("env:")
    assert cfg.metrics.public is False


def test_compose_runs_postgres_and_two_gateway_replicas() -> None:
    c = yaml("compose.yaml")
    services = c["services"]
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    gateways = [s for name, s in services.items() if name.startswith("gateway")]
    assert len(gateways) == 2
    hosts = set()
    for g in gateways:
        assert g["build"]["dockerfile"] == "deploy/Dockerfile"
        assert g["depends_on"]["db"]["condition"] == "service_healthy"
        env = g["environment"]
        assert env["PATCHBAY_DB_PASSWORD"].startswith("${") and env["PATCHBAY_TOKEN"].startswith("${")
        assert "/ready" in " ".join(g["healthcheck"]["test"])
        hosts.add(g["ports"][0].rsplit(":", 2)[1])
        assert any(v.endswith(":/data/data") for v in g["volumes"])  # each its own spool
    assert len(hosts) == 2
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${")


def test_the_cloud_run_service_probes_the_port_and_takes_secrets_from_secret_manager() -> None:
    s = yaml("cloudrun.yaml")
    assert s["apiVersion"] == "serving.knative.dev/v1" and s["kind"] == "Service"
    spec = s["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["ports"][0]["containerPort"] == 8787
    # beyond loopback /health needs the token, which a Cloud Run probe cannot send: the start is
    # probed on the port, and no HTTP probe asks /health without it
    assert container["startupProbe"]["tcpSocket"]["port"] == 8787
    assert all(p.get("httpGet", {}).get("path") != "/health" for k, p in container.items() if k.endswith("Probe"))
    env = {e["name"]: e for e in container["env"]}
    for secret in ("PATCHBAY_TOKEN", "PATCHBAY_DB_PASSWORD"):
        assert "value" not in env[secret] and env[secret]["valueFrom"]["secretKeyRef"]["name"]
    assert float(env["PATCHBAY_DRAIN_S"]["value"]) < 10  # Cloud Run's SIGTERM grace
    assert spec["timeoutSeconds"] >= 600  # Claude Code streams run long


def test_the_stack_hands_the_team_config_its_secrets_from_the_environment() -> None:
    cfg = load_config(DEPLOY / "config.toml")
    assert cfg.team is not None and "oidc" in cfg.team.identity and cfg.team.admin_groups
    assert all(b.auth != "client" for b in cfg.backends)  # team mode forwards no caller's credential
    needed = {b.auth[4:] for b in cfg.backends if b.auth.startswith("env:")} | \
        {k.key[4:] for k in cfg.team.admin_keys} | {cfg.ledger.team.password[4:]}
    assert needed == {"ANTHROPIC_API_KEY", "PATCHBAY_ADMIN_KEY", "PATCHBAY_DB_PASSWORD"}
    for name, g in yaml("compose.yaml")["services"].items():
        if name.startswith("gateway"):
            assert all(g["environment"][v].startswith("${") for v in needed)
    env = {e["name"]: e for e in yaml("cloudrun.yaml")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert all("value" not in env[v] and env[v]["valueFrom"]["secretKeyRef"]["name"] for v in needed)
