"""Patchbay's settings: ``config.toml`` parsed into typed, frozen data, and the file on disk.

The face of the package: ``from app.config import Config, ConfigError, parse_config`` and the section types.
Inside: ``model.py`` (the data), ``parse.py`` (text to ``Config``), ``reading.py`` (the line-pointing helpers),
one file per section with its own parser (``backends.py``, ``team.py``, ``ledger.py`` for ``[ledger]``/``[metrics]``,
``providers.py`` for the OpenAI-compatible providers' rules), and ``disk.py`` (loading and saving the file).
"""

from app.config.model import (
    BACKEND_KINDS,
    BUDGET_PERIODS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_OLLAMA_URL,
    DEFAULT_TOKEN_TTL_S,
    ROUTE_RULES,
    ActiveSelection,
    BackendConfig,
    BudgetConfig,
    Config,
    GatewaySettings,
    LedgerSettings,
    OllamaSettings,
    PriceConfig,
    RoutesConfig,
    RouteTarget,
    cloud_base_url,
    default_auth,
)
from app.config.parse import parse_config
from app.config.reading import ConfigError, is_loopback_host, is_loopback_url

__all__ = [
    "BACKEND_KINDS", "BUDGET_PERIODS", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_OLLAMA_URL", "DEFAULT_TOKEN_TTL_S",
    "ROUTE_RULES", "ActiveSelection", "BackendConfig", "BudgetConfig", "Config", "ConfigError", "GatewaySettings",
    "LedgerSettings", "OllamaSettings", "PriceConfig", "RoutesConfig", "RouteTarget", "cloud_base_url",
    "default_auth", "is_loopback_host", "is_loopback_url", "parse_config",
]
