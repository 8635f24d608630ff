"""The desktop app: a window and a tray icon around the gateway, which runs on its own thread.

``run_gui`` is what ``patchbay [--config PATH]`` calls. Closing the window leaves the app in the
tray (where there is one); Quit stops the gateway cleanly and ends the process, asking first while
Claude Code points at the gateway (keep serving in the background, or disconnect Claude Code).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.views import quit_dialog

log = logging.getLogger(__name__)
T0 = time.perf_counter()


class CollectOnGuiThread(QObject):
    """Python's cyclic collector runs on whichever thread happens to allocate: the gateway's, the ledger's, a
    database probe's. Collecting a cycle that holds a Qt object there deadlocks PySide (Qt's mutex taken on one
    side, the GIL wanted on the other; seen with a qasync future freed by a PostgreSQL probe thread while the GUI
    thread built a table). While the app runs, automatic collection is off and this collects on the GUI thread,
    at the collector's own thresholds, twice a second."""

    def __init__(self, interval_ms: int = 500) -> None:
        super().__init__()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def check(self) -> None:
        counts, limits = gc.get_count(), gc.get_threshold()
        if counts[0] > limits[0]:
            gc.collect(2 if counts[2] > limits[2] else 1 if counts[1] > limits[1] else 0)

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


class App(QObject):
    """Wires the bridge, the window and the tray together."""

    def __init__(self, config_path: Path | None = None, *, paths: Any = None, use_system_tray: bool | None = None,
                 engine_factory: Any = None, hardware_factory: Any = None) -> None:
        super().__init__()
        self.collector = CollectOnGuiThread()  # before any thread of ours allocates
        from app.bridge import Bridge
        from app.views.wheel import install_wheel_guard

        if isinstance(qapp := QApplication.instance(), QApplication):
            install_wheel_guard(qapp)  # before any page exists: no combo, spin box or slider takes a stray wheel
        from app.views.main_window import MainWindow
        from app.views.tray import Tray

        self.bridge = Bridge(config_path, paths=paths, engine_factory=engine_factory,
                             hardware_factory=hardware_factory)
        from app.views.icons import use_backends  # first, so every page repaints with the new colours

        parts = self.bridge.backends
        parts.backendsChanged.connect(lambda: use_backends(b.id for b in parts.backends()))
        tray_ok = QSystemTrayIcon.isSystemTrayAvailable() if use_system_tray is None else use_system_tray
        self.tray = Tray(self.bridge, use_system_tray=tray_ok)
        self.window = MainWindow(self.bridge, keep_running_in_tray=self.tray.icon is not None)
        self.tray.openRequested.connect(self.show_window)
        self.tray.quitRequested.connect(self.request_quit)
        self.window.quitRequested.connect(self.request_quit)
        self.window.hiddenToTray.connect(self._tell_about_tray)
        self._given_paths = paths
        self._desktop_state: Any = None
        self.ask_on_quit: Any = None  # tests may answer the question; else the dialog asks
        self.quitting = False
        self.ends_process = False  # run_gui: Quit also ends Qt's loop (tests keep theirs running)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(self.tray.icon is None)
        self._start_maximized = self._restore_window()

    def _paths(self) -> Any:
        from app.paths import default_paths

        eng = self.bridge.engine
        return eng.paths if eng is not None else (self._given_paths or default_paths())

    def _state(self) -> Any:
        from app.desktop.state import FILE_NAME, DesktopState

        if self._desktop_state is None:
            self._desktop_state = DesktopState(self._paths().data_dir / FILE_NAME)
        return self._desktop_state

    def start(self) -> bool:
        from app.desktop import background as background_gateway

        if background_gateway.stop(self._paths()):  # left serving by the last Quit: this window takes over
            log.info("ended the background gateway the last Quit left running")
        ok = self.bridge.start()
        self.tray.rebuild()
        return ok

    def _restore_window(self) -> bool:
        """The window's size and page from the last run; True when it was maximised."""
        from app.views.main_window import PAGES

        size = self._state().get("window")
        if isinstance(size, dict) and isinstance(size.get("w"), int) and isinstance(size.get("h"), int):
            self.window.resize(size["w"], size["h"])
        page = self._state().get("page")
        if page in {k for k, _ in PAGES} and (page != "team" or self.bridge.team.view().enabled):
            self.window.show_page(page)
        return isinstance(size, dict) and size.get("maximized") is True

    def _remember_window(self) -> None:
        w = self.window
        maximized = bool(w.windowState() & Qt.WindowState.WindowMaximized)
        size = w.normalGeometry().size() if maximized and w.normalGeometry().isValid() else w.size()
        self._state().set("window", {"w": size.width(), "h": size.height(), "maximized": maximized})
        if page := w.current_page():
            self._state().set("page", page)

    def show_window(self) -> None:
        if self._start_maximized:
            self._start_maximized = False
            self.window.setWindowState(self.window.windowState() | Qt.WindowState.WindowMaximized)
        self.window.show()
        self.window.setWindowState(self.window.windowState() & ~Qt.WindowState.WindowMinimized)
        self.window.raise_()
        self.window.activateWindow()

    def _tell_about_tray(self) -> None:
        if self.tray.icon is not None:
            self.tray.icon.showMessage("Patchbay is still running",
                                       "The gateway keeps serving Claude Code. Open the window or quit from this icon.",
                                       self.tray.icon.MessageIcon.Information, 5000)

    def request_quit(self) -> None:
        """Quit from the tray or the window: while Claude Code points here, ask what should become of
        it first (or do what the user said not to be asked about again)."""
        if self.quitting:
            return
        url = self.bridge.gateway().url or ""
        connected = bool(url) and self.bridge.settings.claude_code().connected
        choice = self._state().get("quit_choice") if connected else None
        if connected and choice not in (quit_dialog.DISCONNECT, quit_dialog.BACKGROUND):
            choice, remember = (self.ask_on_quit or quit_dialog.ask)(self.window if self.window.isVisible()
                                                                     else None, url)
            if choice == quit_dialog.CANCEL:
                return
            if remember:
                self._state().set("quit_choice", choice)
        if choice == quit_dialog.DISCONNECT:
            self.bridge.settings.disconnect_claude_code()
            self.quit()
        elif choice == quit_dialog.BACKGROUND:
            self._quit_to_background(url)
        else:
            self.quit()

    def _quit_to_background(self, url: str) -> None:
        from urllib.parse import urlsplit

        from app.desktop import background as background_gateway

        paths, config, token = self._paths(), self.bridge.config_path(), self.bridge.settings.gateway_token()
        port = urlsplit(url).port or 0
        self.quit()
        try:
            background_gateway.start(paths, config, port, token)
        except (OSError, RuntimeError) as exc:
            log.error("the gateway could not go on in the background: %s", exc)

    def quit(self) -> None:
        """Stop the gateway and close (no question: signals, the session ending, tests)."""
        if self.quitting:
            return
        self.quitting = True
        self._remember_window()
        self.window.hide()
        self.tray.hide()
        self.bridge.stop()
        self.collector.stop()
        app = QApplication.instance()
        if app is not None and self.ends_process:
            app.quit()


class _AfterFirstPaint(QObject):
    """Calls ``fn`` once, right after the window's first paint (or after 1.5 s, whichever first)."""

    def __init__(self, window: Any, fn: Any) -> None:
        super().__init__(window)
        self._fn = fn
        self._done = False
        window.installEventFilter(self)
        QTimer.singleShot(1500, self._fire)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and not self._done:
            QTimer.singleShot(0, self._fire)
        return False

    def _fire(self) -> None:
        if not self._done:
            self._done = True
            self._fn()


def settle_memory() -> None:
    """Once the app is up: collect, then freeze what exists into the permanent generation, so the
    collector's full passes stay short (``CollectOnGuiThread`` runs them on the GUI thread)."""
    gc.collect()
    gc.freeze()


def make_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("Patchbay")
    app.setApplicationDisplayName("Patchbay")
    app.setOrganizationName("Patchbay")
    app.setDesktopFileName("patchbay")
    from app.views.icons import app_icon

    app.setWindowIcon(app_icon())
    return app


def _log_qt_messages() -> None:
    """Qt's own warnings (a missing plugin, a failed font, a tray host that went away) into the log."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("qt")
    levels = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}

    def handler(kind: QtMsgType, _context: object, text: str) -> None:
        qt_log.log(levels.get(kind, logging.WARNING), "%s", text)

    qInstallMessageHandler(handler)


def run_gui(config_path: Path | None) -> int:
    """Start the desktop app; returns the process exit code."""
    import qasync

    app = make_application()
    _log_qt_messages()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from app.desktop.single_instance import SingleInstance, instance_key
    from app.paths import default_paths

    instance = SingleInstance(instance_key(default_paths().data_dir))
    if not instance.claim():
        print("patchbay: Patchbay is already running; its window was brought to the front.", file=sys.stderr)
        return 0
    main = App(config_path)
    instance.activated.connect(main.show_window)
    main.ends_process = True
    main.show_window()  # the window first, the gateway once it is on screen: the user sees something at once

    def start() -> None:
        main.start()
        QTimer.singleShot(1000, settle_memory)

    _starter = _AfterFirstPaint(main.window, start)  # noqa: F841 - parented to the window

    def on_signal(*_: Any) -> None:
        QTimer.singleShot(0, main.quit)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread, or not on this platform
            pass
    wake = QTimer()  # lets Python run its signal handlers while Qt's loop sleeps
    wake.start(300)
    wake.timeout.connect(lambda: None)

    done = asyncio.Event()
    app.aboutToQuit.connect(done.set)
    try:
        with loop:
            loop.run_until_complete(done.wait())
    except RuntimeError:  # the loop was stopped from outside while quitting
        pass
    if not main.quitting:
        main.quit()
    return 0 if main.bridge.fatal is None or main.bridge.engine is not None else 1
