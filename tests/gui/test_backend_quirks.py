"""A backend's ``quirks = [...]`` (app/config/providers.py) is not on the Backends page's form:
editing that backend there and saving keeps the line as the config file has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config.disk import load_config

pytestmark = pytest.mark.gui


def test_editing_a_backend_on_the_page_keeps_its_quirks(start_app: Any, config_file: Path, qtbot: Any) -> None:
    text = config_file.read_text()
    config_file.write_text(text.replace('models = ["gpt-fake", "gpt-other"]\n',
                                        'models = ["gpt-fake", "gpt-other"]\nquirks = ["tool_id_9"]\n', 1))
    r = start_app(config_file)
    page = r.window.page("backends")
    row = [b.id for b in page.items].index("beta")
    page.list.setCurrentRow(row)
    page.models_edit.setPlainText("gpt-fake\ngpt-other\ngpt-third")  # an edit on the form
    assert page.items[row].models == ("gpt-fake", "gpt-other", "gpt-third")
    assert page.save()
    beta = load_config(config_file).backend("beta")
    assert beta is not None and beta.quirks == ("tool_id_9",) and "gpt-third" in beta.models
