"""Patchbay: a local Anthropic-compatible gateway and the tray app around it."""

from __future__ import annotations

__version__ = "0.1.0"
