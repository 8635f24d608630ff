"""The stated fallback price of a model name the price table does not know (app/catalog/prices.py):
only where budgets are enforced, a configured ``[[prices]] model = "*"`` first, else the dearest
price known on the backend; and Anthropic's ``-0`` aliases resolve to the model they name."""

from __future__ import annotations

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import Usage

BACKENDS = '''
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "none"

[[backends]]
id = "corp"
kind = "anthropic"
base_url = "https://llm.corp.example"
auth = "none"

[[backends]]
id = "gpt"
kind = "openai"
base_url = "https://llm.corp.example/v1"
auth = "none"
models = ["x"]

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://127.0.0.1:11434"
auth = "none"

[active]
backend = "anthropic"
'''
BUDGET = '\n[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = 5\n'


def test_without_budgets_an_unknown_name_stays_unpriced() -> None:
    pb = PriceBook.load(parse_config(BACKENDS))
    assert not pb.fallback and pb.cost("anthropic", "claude-mystery-9", Usage(1, 1)) is None


def test_with_budgets_an_unknown_name_costs_the_dearest_price_known_on_its_backend() -> None:
    pb = PriceBook.load(parse_config(BACKENDS + BUDGET))
    opus = pb.price_for("anthropic", "claude-mystery-9")
    assert opus is not None and (opus.input, opus.output) == (15.0, 75.0)
    assert pb.priced_by("anthropic", "claude-mystery-9") == "the dearest known price on anthropic (claude-opus-4-1)"
    # a company gateway serving Claude: Claude's dearest, not another seller's
    assert pb.priced_by("corp", "claude-mystery-9") == "the dearest known price on corp (claude-opus-4-1)"
    gpt = pb.price_for("gpt", "mystery")
    assert gpt is not None and gpt.output >= 75.0  # any list-price seller's dearest
    assert pb.cost("ollama", "mystery", Usage(1000, 1000)) == 0.0  # a local backend stays free
    assert pb.priced_by("anthropic", "claude-sonnet-4-5") is None  # the table knows it


def test_a_configured_fallback_wins_for_its_backend_first() -> None:
    pb = PriceBook.load(parse_config(BACKENDS + BUDGET + '''
[[prices]]
model = "*"
input = 2.0
output = 4.0

[[prices]]
model = "*"
backend = "corp"
input = 9.0
output = 18.0
'''))
    assert pb.priced_by("anthropic", "claude-mystery-9") == 'your [[prices]] model = "*"'
    corp = pb.price_for("corp", "claude-mystery-9")
    assert corp is not None and (corp.input, corp.output) == (9.0, 18.0)
    assert pb.priced_by("corp", "claude-mystery-9") == 'your [[prices]] model = "*" for corp'


def test_anthropic_zero_aliases_resolve_to_the_model_they_name() -> None:
    pb = PriceBook.load(parse_config(BACKENDS))
    for alias, model in (("claude-opus-4-0", "claude-opus-4"), ("claude-sonnet-4-0", "claude-sonnet-4")):
        assert pb.price_for("anthropic", alias) is not None
        assert pb.price_for("anthropic", alias) == pb.price_for("anthropic", model)
