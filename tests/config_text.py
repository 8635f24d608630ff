"""The [[backends]] entries many tests start their config.toml from, written once.

Each is a TOML fragment beginning with a newline; a test's config is these joined with its own sections.
"""

ANTHROPIC_CLIENT = """
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "client"
"""

OLLAMA = """
[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://localhost:11434"
auth = "none"
"""

OPENROUTER = """
[[backends]]
id = "openrouter"
kind = "openai"
base_url = "https://openrouter.ai/api/v1"
auth = "env:OPENROUTER_API_KEY"
"""
