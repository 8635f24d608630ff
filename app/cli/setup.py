"""``patchbay env``, ``patchbay key`` and ``patchbay check``: the lines that point Claude Code here, a backend's
stored API key, and what is wrong with the config file."""

from __future__ import annotations

import argparse
import sys

from app.cli.common import config_path


def cmd_env(args: argparse.Namespace) -> int:
    from app.config import ConfigError
    from app.config.disk import load_or_create
    from app.host import secrets
    from app.paths import default_paths

    paths = default_paths()
    try:
        paths.ensure()
        config = load_or_create(config_path(args) or paths.config_file)
    except (ConfigError, OSError) as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    from app.claude.connect import client_url
    from app.cli.claude import print_env

    token, _ = secrets.gateway_token(paths.token_file)
    return print_env(client_url(paths, config), token, args.shell, args.credential)


def cmd_key(args: argparse.Namespace) -> int:
    import getpass

    from app.config import ConfigError
    from app.config.disk import load_or_create
    from app.host import secrets
    from app.paths import default_paths

    paths = default_paths()
    try:
        config = load_or_create(config_path(args) or paths.config_file)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    b = config.backend(args.backend)
    if b is None:
        print(f'patchbay: there is no backend "{args.backend}" in {config.path}. Configured: '
              f"{', '.join(x.id for x in config.backends)}.", file=sys.stderr)
        return 2
    try:
        if args.action == "set":
            if b.auth != "keyring":
                print(f'patchbay: note: the backend "{b.id}" has auth = "{b.auth}", so it will not use the '
                      'keychain until you set auth = "keyring".', file=sys.stderr)
            key = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass(f"API key for {b.id}: ")
            secrets.set_api_key(b.id, key)
            print(f"Stored the API key for {b.id} in {secrets.store_label()}.")
        elif args.action == "delete":
            secrets.delete_api_key(b.id)
            print(f"Removed the stored API key for {b.id}.")
        else:
            print(f"{b.id}: {'a key is stored' if secrets.get_api_key(b.id) else 'no key stored'}")
    except (secrets.NoKeychainError, secrets.SecretError) as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from app.config import ConfigError
    from app.config.disk import load_config
    from app.paths import default_paths
    from app.units import plural

    path = config_path(args) or default_paths().config_file
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: OK ({plural(len(config.backends), 'backend')}, active: {config.active.backend})")
    from app.catalog.output_limits import unknown_models

    unknown = unknown_models(config.backends)
    if unknown:
        print("No known output limit for " + ", ".join(f"{b},{m}" for b, m in unknown) + ": their max_tokens goes "
              "out as the client asks (Claude Code asks for up to 128000). Where a server refuses that, set "
              "max_output_tokens for its backend.")
    from app.catalog.unknown_prices import fallback_lines

    for line in fallback_lines(config):
        print(line)
    return 0
