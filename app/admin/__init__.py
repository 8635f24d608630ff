"""The Admin API: spend limits over HTTP in the shapes of Anthropic's Admin API (``api.py``), and how the engine mounts
it on a team gateway (``setup.py``). It stands above the proxy and the budgets, whose helpers it uses."""
