"""Python's collector runs on the GUI thread while the app runs, never on the gateway's or a probe's thread.

Collecting a cycle that holds a Qt object on another thread deadlocked PySide in a full test run (a qasync future
freed by a PostgreSQL probe thread while the GUI thread built a table): Qt's mutex on one side, the GIL on the
other. The app turns automatic collection off and collects on a GUI-thread timer; Quit gives collection back.
"""

from __future__ import annotations

import gc

from tests.gui.conftest import ask


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collection_happens_on_the_gui_thread_and_comes_back_after_quit(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    assert not gc.isenabled()  # no thread allocating collects behind Qt's back
    ask(r, qtbot, "hi", session="s-gc")  # the gateway's and the ledger's threads allocate meanwhile
    for _ in range(gc.get_threshold()[0] + 10):
        _Cycle()
    before = gc.get_count()[0]
    r.app.collector.check()  # what its timer does twice a second
    assert gc.get_count()[0] < before
    r.app.quit()
    assert gc.isenabled()
