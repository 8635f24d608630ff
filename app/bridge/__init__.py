"""The one door between the Qt views and the engine: one small QObject per feature.

See docs/architecture.md ("The bridge") for what each module holds."""

from __future__ import annotations

from app.bridge.convert import coalesce, record_from_finished, record_from_row
from app.bridge.main import Bridge

__all__ = ["Bridge", "coalesce", "record_from_finished", "record_from_row"]
