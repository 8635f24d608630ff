"""The Export CSV… button of a page: ask where, write it, and say so when it cannot be written."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def ask_and_export(parent: QWidget, title: str, filename: str, export: Callable[[str], object]) -> None:
    path, _ = QFileDialog.getSaveFileName(parent, title, filename, "CSV files (*.csv)")
    if path:
        try:
            export(path)
        except OSError as exc:
            QMessageBox.warning(parent, "Not exported", f"{path} could not be written: {exc.strerror or exc}.")
