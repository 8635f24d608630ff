"""Secrets Patchbay holds are redacted wherever they show up: in error text, bodies and logs."""

from __future__ import annotations

import logging

from app.logs import scrub


def test_a_remembered_secret_without_a_known_shape_is_redacted():
    secret = "corp-gw-7f3a9c1e55d2"
    assert scrub.scrub_text(f"invalid key {secret}") == f"invalid key {secret}"
    scrub.remember(secret)
    assert scrub.scrub_text(f"invalid key {secret}!") == "invalid key [redacted]!"
    assert scrub.scrub(f'{{"m": "{secret}"}}'.encode()) == b'{"m": "[redacted]"}'


def test_short_values_are_never_taken_for_secrets():
    scrub.remember("none")
    assert scrub.scrub_text("none of this is secret") == "none of this is secret"


def test_extra_secrets_and_shapes():
    assert scrub.scrub_text("bad key users-own-key-123", ("users-own-key-123",)) == "bad key [redacted]"
    assert "sk-ant-" not in (scrub.scrub_text("key sk-ant-api03-abcdefghijklmnop") or "")


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks():
    scrub.remember("log-secret-0123456789")
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "upstream said %s", ("no log-secret-0123456789",), None)
    try:
        raise ValueError("log-secret-0123456789 leaked")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    assert scrub.ScrubFilter().filter(rec)
    assert rec.getMessage() == "upstream said no [redacted]"
    assert rec.exc_text and "log-secret-0123456789" not in rec.exc_text and "[redacted] leaked" in rec.exc_text
