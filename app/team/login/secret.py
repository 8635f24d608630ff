"""The IdP client's secret for the browser leg of sign-in, read where ``[team.login] client_secret`` says."""

from __future__ import annotations

import os

from app.config.login import KEYRING_ACCOUNT, LoginConfig


class LoginSecretError(Exception):
    """The client secret cannot be read. ``str()`` says where it was looked for."""


def client_secret(config: LoginConfig) -> str | None:
    """The IdP client's secret (None for "none"); ``LoginSecretError`` when it cannot be read."""
    form = config.client_secret
    if form == "none":
        return None
    if form.startswith("env:"):
        value = os.environ.get(form[4:])
        if not value:
            raise LoginSecretError(f"[team.login] client_secret says {form}, but the environment variable "
                                   f"{form[4:]} is not set. Export the IdP client's secret there.")
        return value
    from app.host import secrets

    try:
        value = secrets.get_api_key(KEYRING_ACCOUNT)
    except secrets.NoKeychainError as exc:
        raise LoginSecretError(f'[team.login] client_secret = "keyring", but {exc}') from None
    if not value:
        raise LoginSecretError('[team.login] client_secret = "keyring", but the keychain holds none. Run '
                               "`patchbay key set team-login`, or use client_secret = \"env:NAME\".")
    return value
