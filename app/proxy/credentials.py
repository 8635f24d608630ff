"""Credentials that expire: a token printed by a command, Google's application-default
credentials, and AWS credentials for SigV4.

Each one is fetched off the gateway's event loop (a subprocess, or a worker thread for the
blocking google-auth and botocore calls), cached, and renewed before it runs out, so a request
normally pays nothing for it. ``refresh()`` forces a new one after the upstream answered 401.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from app.errors import ApiError
from app.proxy.stops import CredentialMissing  # Patchbay found no credential: nothing was refused

log = logging.getLogger("patchbay.credentials")

GOOGLE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
COMMAND_TIMEOUT_S = 30.0
EARLY = 0.8  # a command's token is renewed in the background after this share of its lifetime


class TokenSource:
    """Something that hands out a bearer token and can be told that the last one was refused."""

    async def token(self) -> str:
        raise NotImplementedError

    async def refresh(self, stale: str | None) -> None:
        """``stale`` was refused: make sure the next ``token()`` is a different, fresh one (unless
        another request already got one)."""
        raise NotImplementedError


class CommandToken(TokenSource):
    """``auth = "command:<cmd>"``: the command's stdout (stripped) is the token, used for
    ``ttl_s`` seconds. After ``EARLY`` of that time a request still gets the cached token while a
    new one is fetched in the background; only the first request (or one after expiry, or after
    a 401) waits for the command. One command runs at a time, however many requests wait."""

    def __init__(self, backend_id: str, command: str, ttl_s: float, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.backend_id = backend_id
        self.command = command
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.runs = 0  # how many times the command ran (the GUI and tests read it)
        self._token: str | None = None
        self._fetched = 0.0
        self._task: asyncio.Task[str] | None = None

    async def token(self) -> str:
        tok = self._token
        if tok is not None:
            age = time.monotonic() - self._fetched
            if age < self.ttl_s:
                if age >= self.ttl_s * EARLY and self._task is None:
                    self._start().add_done_callback(_log_background_failure)
                return tok
        return await asyncio.shield(self._start())

    async def refresh(self, stale: str | None) -> None:
        task = self._task
        if task is not None and not task.done():  # a run already under way (an early refresh)
            try:
                await asyncio.shield(task)
            except ApiError:
                pass
        if self._token is not None and self._token != stale:
            return  # renewed meanwhile, by the run above or for another request
        self._token = None
        await asyncio.shield(self._start())

    def _start(self) -> asyncio.Task[str]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def _run(self) -> str:
        try:
            tok = await run_token_command(self.backend_id, self.command, self.timeout_s)
            self.runs += 1
            self._token, self._fetched = tok, time.monotonic()
            return tok
        finally:
            self._task = None


def _log_background_failure(task: asyncio.Task[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("early token refresh failed (the current token stays in use): %s", task.exception())


async def run_token_command(backend_id: str, command: str, timeout_s: float) -> str:
    """Run ``command`` through the shell and return its stdout, stripped, or raise a
    ApiError whose message says what failed and what to do."""
    what = f'The token command of the backend "{backend_id}" (`{command}`)'
    fix = ("Run the command in a terminal to see what it needs (often a fresh login, e.g. `gcloud auth login`), "
           'or change auth = "command:..." in the config.')
    try:
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
        )
    except OSError as exc:
        raise CredentialMissing(401, "authentication_error",
                           f"Patchbay: {what} could not be started ({exc.strerror or exc}). {fix}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CredentialMissing(401, "authentication_error",
                           f"Patchbay: {what} did not finish within {timeout_s:g} s, so it was stopped. {fix}") from None
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
        raise
    tail = err.decode("utf-8", "replace").strip()[-400:]
    if proc.returncode != 0:
        said = f" It said: {tail}" if tail else " It printed nothing on stderr."
        raise CredentialMissing(401, "authentication_error",
                           f"Patchbay: {what} failed with exit code {proc.returncode}.{said} {fix}")
    tok = out.decode("utf-8", "replace").strip()
    if not tok or "\n" in tok:
        said = "nothing" if not tok else "more than one line"
        raise CredentialMissing(401, "authentication_error",
                           f"Patchbay: {what} printed {said} on stdout; it must print the token alone. {fix}")
    return tok


class GoogleToken(TokenSource):
    """Google application-default credentials (``gcloud auth application-default login``, a
    service-account file in GOOGLE_APPLICATION_CREDENTIALS, the metadata server), scoped for
    Vertex AI. google-auth's ``valid`` turns false a few minutes before expiry, so the token is
    renewed before it runs out; the blocking refresh runs in a worker thread."""

    def __init__(self, backend_id: str) -> None:
        self.backend_id = backend_id
        self._creds: Any = None
        self._lock: asyncio.Lock | None = None
        self._http: Any = None

    async def token(self) -> str:
        creds = self._creds
        if creds is not None and creds.valid:
            return str(creds.token)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            creds = self._creds
            if creds is None or not creds.valid:
                await asyncio.to_thread(self._load_and_refresh)
            return str(self._creds.token)

    async def refresh(self, stale: str | None) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            creds = self._creds
            if creds is not None and creds.valid and creds.token != stale:
                return  # another request renewed it while this one waited
            await asyncio.to_thread(self._load_and_refresh)

    def _load_and_refresh(self) -> None:
        try:
            import google.auth
            import google.auth.exceptions
            import urllib3
            from google.auth.transport.urllib3 import Request
        except ImportError as exc:  # an installation without what pyproject.toml declares
            raise ApiError(
                500, "api_error",
                f'This Patchbay installation lacks a library the backend "{self.backend_id}" (Vertex) needs: '
                f"{_first_line(exc)} Reinstall Patchbay (`pip install --upgrade patchbay`, or `./patchbay` from a "
                "checkout), or install google-auth[urllib3] into its environment.",
            ) from None

        try:
            if self._creds is None:
                creds, _project = google.auth.default(scopes=list(GOOGLE_SCOPES))
                self._creds = creds
            if self._http is None:
                self._http = urllib3.PoolManager()
            self._creds.refresh(Request(self._http))
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise CredentialMissing(
                401, "authentication_error",
                f'Patchbay found no Google credentials for the backend "{self.backend_id}" ({_first_line(exc)}). '
                "Run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a "
                "service-account key file, then try again.",
            ) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialMissing(
                401, "authentication_error",
                f'Patchbay could not get a Google access token for the backend "{self.backend_id}": '
                f"{_first_line(exc)}. Run `gcloud auth application-default login` again, or check the key file.",
            ) from None


class AwsCredentials:
    """AWS credentials from botocore's usual chain (environment, ~/.aws profiles, SSO, a
    credential_process, instance roles), optionally for one profile. Temporary credentials are
    refreshed by botocore when they near expiry; that call can block (SSO, STS, a process), so
    it runs in a worker thread whenever a refresh is due."""

    def __init__(self, backend_id: str, profile: str | None) -> None:
        self.backend_id = backend_id
        self.profile = profile
        self._creds: Any = None
        self._lock: asyncio.Lock | None = None

    async def frozen(self) -> Any:
        """A ``ReadOnlyCredentials`` (access key, secret key, token) good for signing now."""
        creds = self._creds
        if creds is not None and not _refresh_due(creds):
            return creds.get_frozen_credentials()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await asyncio.to_thread(self._load_frozen)

    def _load_frozen(self) -> Any:
        import botocore.exceptions
        import botocore.session

        try:
            if self._creds is None:
                session = botocore.session.Session(profile=self.profile)
                creds = session.get_credentials()
                if creds is None:
                    raise CredentialMissing(
                        401, "authentication_error",
                        f'Patchbay found no AWS credentials for the backend "{self.backend_id}"'
                        f"{f' (profile {self.profile!r})' if self.profile else ''}. Run `aws configure` or "
                        "`aws sso login`, export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a Bedrock "
                        'API key with auth = "env:AWS_BEARER_TOKEN_BEDROCK".',
                    )
                self._creds = creds
            return self._creds.get_frozen_credentials()
        except botocore.exceptions.ProfileNotFound:
            raise CredentialMissing(
                401, "authentication_error",
                f'The backend "{self.backend_id}" names the AWS profile {self.profile!r}, which is not in '
                "~/.aws/config. Fix profile in the config, or create it with `aws configure --profile`.",
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CredentialMissing(
                401, "authentication_error",
                f'Patchbay could not get AWS credentials for the backend "{self.backend_id}": {exc}. '
                "Log in again (e.g. `aws sso login`) and retry.",
            ) from None


def _refresh_due(creds: Any) -> bool:
    check = getattr(creds, "refresh_needed", None)
    return bool(check()) if check is not None else False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
