"""Plain formatting shared by the services' sentences and the views (no Qt, no I/O)."""

from __future__ import annotations


def fmt_bytes(n: float | None) -> str:
    """Decimal units, as Ollama and disk tools print sizes: 4.7 GB, 274.0 MB; None is a dash."""
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
