"""Background work for the bridge parts: one worker thread for ledger reads, and the engine's
coroutines on the GUI thread's asyncio loop (qasync). Results come back on the GUI thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

from app.config import ConfigError

log = logging.getLogger("app.bridge")

T = TypeVar("T")
Done = Callable[[Any, BaseException | None], None]  # (result, error): runs on the GUI thread


class Jobs(QObject):
    """Runs work off the GUI thread; ``done(result, error)`` is called back on it."""

    _jobDone = Signal(object, object, object)  # callback, result, exception

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchbay-ledger")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._jobDone.connect(self._on_job_done)

    def submit(self, fn: Callable[[], T], done: Callable[[T | None, BaseException | None], None]) -> None:
        """Run ``fn`` on the ledger thread."""
        try:
            fut = self._pool.submit(fn)
        except RuntimeError:  # shut down
            return
        fut.add_done_callback(lambda f: self._jobDone.emit(done, None if f.exception() else f.result(), f.exception()))

    @Slot(object, object, object)
    def _on_job_done(self, done: Done, result: Any, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, ConfigError):
            log.warning("background job failed: %r", error)
        done(result, error)

    def spawn(self, coro: Coroutine[Any, Any, T],
              done: Callable[[T | None, BaseException | None], None]) -> asyncio.Future[T] | None:
        """Run a coroutine on the GUI thread's asyncio loop without blocking; the task is returned
        (cancel it to stop the work).

        Where no asyncio loop runs on this thread, it runs on a short-lived thread instead (and
        None is returned: that work cannot be cancelled)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)

            def finished(t: asyncio.Future[T]) -> None:
                self._tasks.discard(t)
                if t.cancelled():
                    return
                exc = t.exception()
                done(None if exc else t.result(), exc)

            task.add_done_callback(finished)
            return task

        def run() -> None:
            result: T | None = None
            error: BaseException | None = None
            try:
                result = asyncio.run(coro)
            except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
                error = exc
            self._jobDone.emit(done, result, error)

        threading.Thread(target=run, name="patchbay-async", daemon=True).start()
        return None

    def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()

    def shutdown(self) -> None:
        self.cancel_tasks()
        self._pool.shutdown(wait=False, cancel_futures=True)
