"""ProxyRuntime: the gateway on its own thread, with its own event loop and uvicorn server.

Every public method is thread-safe. Changing routing builds a new immutable snapshot and swaps
one reference on the gateway's loop, so requests in flight finish where they started.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from dataclasses import replace
from typing import Any

from app.config import Config
from app.events import BackendHealth, EventHub, GatewayState
from app.logs import scrub
from app.proxy.backends.base import Backend, KeyLookup
from app.proxy.backends.factory import make_backend
from app.proxy.closing import close_soon
from app.proxy.gateway import Gateway
from app.proxy.routing import Pin, RoutingTable
from app.proxy.snapshot import AdmissionHook, Snapshot
from app.proxy.team import TeamGate
from app.team.identity import IdentityChain

log = logging.getLogger("patchbay.server")


class GatewayStartError(Exception):
    """The gateway could not start. ``str()`` says why and what to do."""


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # Windows
        return asyncio.new_event_loop()


def _quiet_server_class() -> Any:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn's main loop wakes ten times a second to poll ``should_exit``; an idle app in
        the menu bar all day should not. This one sleeps until told to stop."""

        exit_event: asyncio.Event | None = None

        async def main_loop(self) -> None:
            await self.on_tick(0)  # sets the default headers once
            self.exit_event = asyncio.Event()
            if not self.should_exit:
                await self.exit_event.wait()

        def request_exit(self) -> None:  # on the server's loop
            self.should_exit = True
            if self.exit_event is not None:
                self.exit_event.set()

    return QuietServer


def bind_socket(host: str, port: int) -> socket.socket:
    from app.proxy.listen import allow_reuse, reuse_port

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port():  # one of `serve --workers N`'s processes (app/proxy/listen.py)
            allow_reuse(sock)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
            raise GatewayStartError(
                f"Port {port} on {host} is already in use, probably by another Patchbay or another program. "
                f"Quit that program, or pick another port (patchbay serve --port N, or port in the [gateway] "
                f"section / the Settings page) and point ANTHROPIC_BASE_URL at it."
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise GatewayStartError(
                f"Patchbay is not allowed to listen on {host}:{port}. Use a port above 1024, e.g. 8787."
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            raise GatewayStartError(
                f"{host} is not an address of this machine. Use 127.0.0.1 (the default)."
            ) from None
        raise GatewayStartError(f"Patchbay could not listen on {host}:{port}: {exc.strerror or exc}.") from None
    return sock


class ProxyRuntime:
    def __init__(self, config: Config, *, token: str | None, hub: EventHub | None = None,
                 admission: AdmissionHook | None = None, keys: KeyLookup,
                 identity: IdentityChain | None = None) -> None:
        """``identity``: in team mode (``config.team`` set) the chain that verifies every caller."""
        self.hub = hub or EventHub()
        self._identity = identity
        self._keys = keys
        self._config = config
        self._token = token
        scrub.remember(token)
        self._admission = admission
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._sock: socket.socket | None = None
        self._port = config.gateway.port
        self._host = config.gateway.host
        self._pins: dict[str, Pin] = {}
        self._backends: dict[str, Backend] = {}
        self.gateway = Gateway(self._snapshot(config), self.hub)
        self._failure: BaseException | None = None
        # on stop, how long requests in flight may go on (stop accepting, finish, then close);
        # `patchbay serve` sets what Cloud Run / Kubernetes allow between SIGTERM and the kill
        self.drain_s = 3.0
        # team mode: the ASGI app of /v1/organizations/… (app/admin/api.py), beside the gateway
        self.admin: Any = None

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> Config:
        return self._config

    @property
    def url(self) -> str:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def listen_address(self) -> str:
        """Where the gateway really listens (``0.0.0.0:8787`` when on every address)."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"{host}:{self._port}"

    @property
    def exposed(self) -> bool:
        """True when other machines can reach the gateway (not bound to loopback)."""
        from app.proxy.access import exposed

        return exposed(self._host)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._server is not None

    @property
    def paused(self) -> bool:
        return self.gateway.paused

    @property
    def pins(self) -> dict[str, Pin]:
        return dict(self._pins)

    def health(self) -> dict[str, BackendHealth]:
        """Each backend's circuit breaker as last published (safe from any thread: the gateway
        replaces the whole mapping in one assignment). Backends that never failed are absent."""
        return dict(self.gateway.health.snapshot)

    # ------------------------------------------------------------------ snapshot

    def _snapshot(self, config: Config, token: str | None = None) -> Snapshot:
        """Build backends (reusing unchanged ones) and the routing table for ``config``."""
        old = self._backends
        new: dict[str, Backend] = {}
        for bc in config.backends:
            prev = old.get(bc.id)
            if prev is not None and prev.config == bc and prev.config.kind == bc.kind:
                new[bc.id] = prev
            else:
                new[bc.id] = make_backend(bc, config.gateway, self._keys)
        retired = [b for bid, b in old.items() if new.get(bid) is not b]
        self._backends = new
        for b in retired:
            b.retired = True
            if b.inflight == 0:
                self._close_later(b)
        pins = {sid: p for sid, p in self._pins.items() if p.backend in new}
        self._pins = pins
        team = None
        if config.team is not None:
            if self._identity is None:
                raise GatewayStartError("The config has a [team] section but no identity chain was set up for it.")
            team = TeamGate(self._identity, config.team.groups)
        return Snapshot(
            settings=config.gateway,
            table=RoutingTable.from_config(config, pins),
            backends=new,
            token=self._token if token is None else token,
            capture=config.ledger.capture,
            admission=self._admission,
            team=team,
        )

    def _close_later(self, backend: Backend) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            # on the loop, where requests claim backends: one that claimed it meanwhile closes it later
            loop.call_soon_threadsafe(lambda: close_soon(backend.aclose()) if backend.inflight == 0
                                      else None)

    def _swap(self, snap: Snapshot) -> None:
        # one reference assignment; the loop reads it at the start of each request
        self.gateway.snap = snap

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            host, port = self._config.gateway.host, self._config.gateway.port
            self._sock = bind_socket(host, port)
            self._host, self._port = host, self._sock.getsockname()[1]
            self._failure = None
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._sock, ready), name="patchbay-gateway",
                                            daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not ready.wait(0.005):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    break
            if not ready.is_set():
                reason = self._failure
                self.stop(timeout=2.0)
                raise GatewayStartError(f"The gateway did not start: {reason or 'timed out'}.")
        if self.exposed:
            log.warning("the gateway listens on %s, beyond this machine: every request, /v1/models and /health "
                        "need the gateway token", self.listen_address)
        self.hub.publish(GatewayState("running", self.url))

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        import uvicorn

        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        from app.proxy.guard import GuardedHttpToolsProtocol, raise_descriptor_limit

        raise_descriptor_limit()
        cfg = uvicorn.Config(
            self._app, interface="asgi3", lifespan="off", http=GuardedHttpToolsProtocol, loop="none", log_config=None,
            log_level="warning", access_log=False, timeout_keep_alive=120,
            timeout_graceful_shutdown=max(1, round(self.drain_s)), server_header=False, date_header=False,
            proxy_headers=False,
        )
        server = _quiet_server_class()(cfg)
        self._server = server

        async def serve() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.002)
            if server.started:
                ready.set()
            await task

        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start() and the log
            self._failure = exc
            log.exception("gateway stopped with an error")
        finally:
            try:
                for b in list(self._backends.values()):
                    loop.run_until_complete(b.aclose())
                if self._identity is not None:
                    loop.run_until_complete(self._identity.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:
                pass
            self._server = None
            self._loop = None
            loop.close()
            try:
                sock.close()
            except OSError:
                pass

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The Admin API's paths to it where there is one (team mode), all else to the gateway."""
        admin = self.admin
        if admin is not None and scope.get("type") == "http" and scope.get("path", "").startswith("/v1/organizations/"):
            await admin(scope, receive, send)
        else:
            await self.gateway(scope, receive, send)

    def stop(self, timeout: float | None = None) -> None:
        timeout = self.drain_s + 7.0 if timeout is None else timeout
        with self._lock:
            server, loop, thread = self._server, self._loop, self._thread
            if server is not None and loop is not None:
                try:
                    loop.call_soon_threadsafe(server.request_exit)
                except RuntimeError:
                    pass
            if thread is not None:
                thread.join(timeout)
            self._thread = None
        self.hub.publish(GatewayState("stopped", None))

    # ------------------------------------------------------------------ changes

    def apply(self, config: Config, *, token: str | None = None, identity: IdentityChain | None = None) -> None:
        """Use ``config`` from the next request on. A new host/port restarts the listener.
        ``identity``: a new chain for a changed ``[team]`` (the old one is closed on the loop)."""
        with self._lock:
            if token is not None:
                self._token = token
            if identity is not None and identity is not self._identity:
                old, self._identity = self._identity, identity
                loop = self._loop
                if old is not None and loop is not None and loop.is_running():
                    loop.call_soon_threadsafe(lambda: close_soon(old.aclose()))
            restart = (config.gateway.host, config.gateway.port) != (self._config.gateway.host,
                                                                     self._config.gateway.port)
            self._config = config
            self._swap(self._snapshot(config))
            if restart and self._thread is not None:
                self.stop()
                self.start()

    def set_token(self, token: str) -> None:
        with self._lock:
            self._token = token
            scrub.remember(token)
            self._swap(replace(self.gateway.snap, token=token))

    def set_routes(self, routes: dict[str, Any]) -> None:
        """More routes by exact path (``[team.login]``'s sign-in endpoints: ``LoginService.routes``),
        replacing the previous set in one assignment."""
        self.gateway.extra_routes = dict(routes)

    def set_admission(self, admission: AdmissionHook | None) -> None:
        with self._lock:
            self._admission = admission
            self._swap(replace(self.gateway.snap, admission=admission))

    def set_active(self, backend: str, model: str | None) -> None:
        with self._lock:
            if self._config.backend(backend) is None:
                raise KeyError(f'There is no backend "{backend}".')
            self._config = self._config.with_active(backend, model)
            snap = self.gateway.snap
            self._swap(replace(snap, table=snap.table.with_active(backend, model)))

    def pin_session(self, session_id: str, backend: str, model: str | None = None) -> None:
        with self._lock:
            if self._config.backend(backend) is None:
                raise KeyError(f'There is no backend "{backend}".')
            self._pins[session_id] = Pin(backend, model)
            snap = self.gateway.snap
            self._swap(replace(snap, table=snap.table.with_pin(session_id, Pin(backend, model))))

    def unpin_session(self, session_id: str) -> None:
        with self._lock:
            self._pins.pop(session_id, None)
            snap = self.gateway.snap
            self._swap(replace(snap, table=snap.table.with_pin(session_id, None)))

    def pause(self) -> None:
        self.gateway.paused = True
        self.hub.publish(GatewayState("paused", self.url))

    def resume(self) -> None:
        self.gateway.paused = False
        self.hub.publish(GatewayState("running", self.url))

    def refresh_keys(self) -> None:
        """Re-read API keys (after the user stored one)."""
        for b in list(self._backends.values()):
            b.refresh_key()
