"""What ``patchbay check`` says about model names the price table does not know.

Where budgets are enforced (a ``[team]`` or any ``[[budgets]]``) such a name is charged at a
stated fallback price (``PriceBook.fallback_price``, app/catalog/prices.py); an admin should
know which, per backend, before a made-up name shows up on a bill. A backend where nothing is
known gets no fallback: its requests stay unpriced, and budgets cannot count them.
"""

from __future__ import annotations

from app.catalog.prices import FALLBACK_SOURCE, PriceBook
from app.config import Config


def fallback_lines(config: Config) -> list[str]:
    """One line per non-local backend: the fallback price there, or that there is none."""
    book = PriceBook.load(config)
    if not book.fallback:
        return []
    out = []
    for b in config.backends:
        if b.is_local:
            continue
        p = book.fallback_price(b)
        if p is None:
            out.append(f"{b.id}: no price is known on this backend, so a model the price table does not know is "
                       'unpriced there and budgets cannot count it. Add [[prices]] model = "*" (with backend = '
                       f'"{b.id}") to charge such names.')
        else:
            out.append(f"{b.id}: a model the price table does not know is charged at {p.source[len(FALLBACK_SOURCE):]}"
                       f" (${p.input:g} in / ${p.output:g} out a million tokens); its ledger rows say so "
                       "(priced_by).")
    return out
