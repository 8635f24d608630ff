"""``patchbay --selftest``: prove that this copy of Patchbay (a built bundle or a checkout) has
everything it needs, without touching the user's files, keychain or network.

It loads the price table and the icons, starts the gateway headless on a free loopback port
with a throwaway ``PATCHBAY_HOME``, answers ``/health``, sends one ``/v1/messages`` request
through the gateway to a tiny OpenAI-compatible upstream served in this process on loopback,
checks the answer and the ledger's record of it (tokens and cost), then starts the GUI stack on
Qt's offscreen platform (PySide6 widgets, the platform plugins, pyqtgraph, the app's own pages).
Prints one line per check and exits 0, or non-zero with a sentence saying what is missing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO

from app.desktop.startup import Resolver

ANSWER = "Patchbay self-test: the upstream answered."
PROMPT_TOKENS, COMPLETION_TOKENS = 21, 9
TOKEN = "pb-selftest-token"
REPORT_FILE = Path(tempfile.gettempdir()) / "patchbay-selftest.txt"  # where a build with no console reports


class SelftestFailure(Exception):
    """One check failed. ``str()`` says what is wrong and what to do."""


class NotInstalled(Exception):
    """An optional part (the GUI extra) is not installed: said, and not a failure."""


# --------------------------------------------------------------------------- the fake upstream


class _Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible ``/v1/chat/completions`` that always gives the same short answer."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, object]]

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        req = json.loads(body)
        type(self).seen.append(req)
        self._send(200, {
            "id": "chatcmpl-selftest", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        })

    def _send(self, status: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def _upstream() -> Iterator[tuple[str, list[dict[str, object]]]]:
    handler: type[_Upstream] = type("Upstream", (_Upstream,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, name="selftest-upstream", daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- the checks


def check_prices() -> str:
    from app.catalog.prices import PRICE_TABLE, PriceTable

    try:
        table = PriceTable.load()
    except RuntimeError as exc:
        raise SelftestFailure(str(exc)) from None
    if not table.models:
        raise SelftestFailure(f"The price table {PRICE_TABLE} lists no model. Reinstall Patchbay.")
    return f"{len(table.models)} models from {len(table.providers)} providers ({PRICE_TABLE})"


def check_icons() -> str:
    from app.paths import RESOURCES

    found = sorted(p.name for p in (RESOURCES / "icons").glob("patchbay-*.png"))
    if not found:
        raise SelftestFailure(f"The app icons are missing from {RESOURCES / 'icons'}. Reinstall Patchbay.")
    return f"{len(found)} sizes in {RESOURCES / 'icons'}"


def _priced_model() -> tuple[str, str]:
    """A (provider, model) pair from the shipped table, so the ledger's cost comes from it."""
    from app.catalog.prices import PriceTable

    for provider, model, _aliases, price in PriceTable.load().models:
        if price.input > 0 and price.offpeak is None:
            return provider, model
    raise SelftestFailure("The price table has no priced model to test with. Reinstall Patchbay.")


def check_gateway() -> str:
    import httpx

    from app.core import Engine, StartError
    from app.events import RequestFinished
    from app.paths import Paths

    provider, model = _priced_model()
    with tempfile.TemporaryDirectory(prefix="patchbay-selftest-") as tmp, _upstream() as (base_url, seen), \
            _env(PATCHBAY_HOME=tmp, PATCHBAY_TOKEN=TOKEN):
        home = Path(tmp)
        config = home / "config.toml"
        config.write_text(
            "[gateway]\nhost = \"127.0.0.1\"\nport = 0\n\n"
            f"[[backends]]\nid = \"{provider}\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\nauth = \"none\"\n"
            f"models = [\"{model}\"]\nlocal = false\n\n"
            f"[active]\nbackend = \"{provider}\"\nmodel = \"{model}\"\n", encoding="utf-8")
        try:
            engine = Engine(config, paths=Paths(home, home / "data", home / "logs"), host="127.0.0.1", port=0)
        except StartError as exc:
            raise SelftestFailure(f"The gateway could not be set up: {exc}") from None
        finished = threading.Event()
        engine.hub.add(lambda ev: finished.set() if type(ev) is RequestFinished else None)
        try:
            engine.start()
        except StartError as exc:
            engine.ledger.close()
            raise SelftestFailure(f"The gateway did not start: {exc}") from None
        try:
            with httpx.Client(base_url=engine.url, timeout=10.0, trust_env=False) as client:
                health = client.get("/health")
                if health.status_code != 200 or health.json().get("status") != "ok":
                    raise SelftestFailure(f"GET /health answered {health.status_code}: {health.text[:200]}")
                r = client.post("/v1/messages", headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01"},
                                json={"model": model, "max_tokens": 32,
                                      "messages": [{"role": "user", "content": "Are you there?"}]})
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            text = "".join(b.get("text", "") for b in body.get("content", []) if isinstance(b, dict))
            if r.status_code != 200 or text != ANSWER:
                raise SelftestFailure(f"POST /v1/messages through the gateway answered {r.status_code}: "
                                      f"{r.text[:300]}")
            if len(seen) != 1 or seen[0].get("model") != model:
                raise SelftestFailure(f"The upstream received {len(seen)} requests instead of one for {model}.")
            if not finished.wait(10.0) or not engine.ledger.flush(10.0):
                raise SelftestFailure("The request was answered but never reached the usage ledger.")
            rows = engine.reader.requests(limit=5)
            if len(rows) != 1:
                raise SelftestFailure(f"The usage ledger holds {len(rows)} requests instead of one.")
            row = rows[0]
            if (row.input_tokens, row.output_tokens) != (PROMPT_TOKENS, COMPLETION_TOKENS) or not row.cost_usd:
                raise SelftestFailure(
                    f"The usage ledger recorded {row.input_tokens} in / {row.output_tokens} out tokens costing "
                    f"{row.cost_usd} instead of {PROMPT_TOKENS} / {COMPLETION_TOKENS} at the {provider} price.")
        finally:
            engine.stop()
    return (f"gateway on {engine.url}: /health ok, /v1/messages → fake upstream → answered; ledger: "
            f"{row.input_tokens} in / {row.output_tokens} out tokens, ${row.cost_usd:.8f} ({provider} {model})")


def check_window_libraries(environ: dict[str, str] | None = None, resolver: Resolver | None = None) -> str:
    """What a real window needs beyond the offscreen plugin: on Linux, the system libraries of Qt's
    X11 plugin (or, in a Wayland session, of its Wayland plugin). The display itself is not needed."""
    from app.desktop import startup

    env = dict(os.environ) if environ is None else environ
    if not sys.platform.startswith("linux"):
        return "native"
    resolve = resolver or startup.loader_resolver()
    manager = startup.package_manager(startup.read_os_release())
    x11 = startup.missing_libs("xcb", resolve)
    if not x11:
        return "X11 libraries present"
    if env.get("WAYLAND_DISPLAY") and not startup.missing_libs("wayland", resolve):
        return f"Wayland libraries present (X11 would also need {', '.join(x11)})"
    line = startup.install_line(x11, manager)
    raise SelftestFailure(f"A window cannot open: Qt's X11 plugin needs {', '.join(x11)}, which "
                          f"{'is' if len(x11) == 1 else 'are'} not installed. "
                          + (f"Install with: {line}" if line else "Install your distribution's packages for them."))


def check_gui() -> str:
    from app.desktop.extra import GUI_PIP, missing_gui_modules

    missing = missing_gui_modules()
    if missing and not getattr(sys, "frozen", False):
        raise NotInstalled(f"not installed ({', '.join(missing)}); `{GUI_PIP}` adds the desktop app")
    window = check_window_libraries()
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("QT_API", "pyside6")
    try:
        import pyqtgraph as pg
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import QLibraryInfo
        from PySide6.QtWidgets import QApplication, QWidget
    except ImportError as exc:
        raise SelftestFailure(f"The GUI libraries are missing ({exc}). Reinstall Patchbay.") from None
    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    names = sorted(p.name for p in plugins.glob("*") if p.is_file())
    wanted = {"linux": ("qxcb", "qoffscreen"), "darwin": ("qcocoa", "qoffscreen"), "win32": ("qwindows",
                                                                                                "qoffscreen")}
    need = wanted.get(sys.platform, ("qoffscreen",))
    missing = [n for n in need if not any(n in f for f in names)]
    if missing:
        raise SelftestFailure(f"Qt's platform plugins {', '.join(missing)} are missing from {plugins} "
                              f"(found: {', '.join(names) or 'none'}). Reinstall Patchbay.")
    app = QApplication.instance() or QApplication([sys.argv[0], "-platform", "offscreen"])
    from app.views.icons import app_icon
    from app.views.main_window import MainWindow  # noqa: F401 (the bundle must hold the app's pages)

    if app_icon().isNull():
        raise SelftestFailure("The app icon could not be loaded. Reinstall Patchbay.")
    w = QWidget()
    plot = pg.PlotWidget(parent=w)
    plot.plot([0, 1, 2, 3], [1, 3, 2, 4])
    w.resize(320, 200)
    image = w.grab().toImage()
    if image.isNull() or image.width() != 320:
        raise SelftestFailure("Qt could not draw a plot offscreen.")
    w.deleteLater()
    app.processEvents()
    return (f"PySide6 {pyside_version}, pyqtgraph {pg.__version__}, platform plugins: "
            f"{', '.join(n for n in names)}; {window}")


# botocore service models the cloud backends can need: the credential chain's SSO and role
# clients. The bundle keeps only these of botocore's ~400 (packaging/patchbay.spec).
AWS_SERVICE_MODELS = ("sts", "sso", "sso-oidc")


def check_cloud() -> str:
    """What the bedrock and vertex kinds load on first use: a signer, the event-stream decoder,
    the AWS credential chain's service models, and google-auth's transport."""
    import botocore.session
    from botocore.auth import SigV4Auth  # noqa: F401
    from botocore.eventstream import EventStreamBuffer  # noqa: F401
    from google.auth.transport.urllib3 import Request  # noqa: F401

    session = botocore.session.get_session()
    for name in AWS_SERVICE_MODELS:
        try:
            session.get_service_model(name)
        except Exception as exc:  # noqa: BLE001 - said as a failure below
            raise SelftestFailure(f"botocore's {name!r} service model is missing ({exc}). Reinstall Patchbay.") \
                from None
    return f"SigV4, event streams, AWS credential models ({', '.join(AWS_SERVICE_MODELS)}), google-auth"


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("price table", check_prices),
    ("icons", check_icons),
    ("gateway", check_gateway),
    ("cloud backends", check_cloud),
    ("GUI stack", check_gui),
)


def run(out: TextIO | None = None) -> int:
    """Run every check, print a line for each; 0 when all pass."""
    if out is None and sys.stdout is None:  # a windowed Windows build has no stdout: write a file
        with open(REPORT_FILE, "w", encoding="utf-8") as fh:
            return run(fh)
    out = out or sys.stdout
    from app import __version__

    where = "bundle " + sys.executable if getattr(sys, "frozen", False) else "source " + str(Path(__file__).resolve().parents[1])
    print(f"Patchbay {__version__} self-test ({where})", file=out, flush=True)
    failed = 0
    for name, check in CHECKS:
        t0 = time.perf_counter()
        try:
            detail = check()
        except NotInstalled as exc:
            print(f"  --   {name}: {exc}", file=out, flush=True)
            continue
        except SelftestFailure as exc:
            failed += 1
            print(f"  FAIL {name}: {exc}", file=out, flush=True)
            continue
        except Exception as exc:  # an unexpected error is a failed check, said plainly
            failed += 1
            print(f"  FAIL {name}: {type(exc).__name__}: {exc}", file=out, flush=True)
            continue
        print(f"  ok   {name} ({(time.perf_counter() - t0) * 1000:.0f} ms): {detail}", file=out, flush=True)
    if failed:
        print(f"Self-test failed: {failed} of {len(CHECKS)} checks did not pass (see above).", file=out, flush=True)
        return 1
    print(f"Self-test passed: all {len(CHECKS)} checks.", file=out, flush=True)
    return 0
