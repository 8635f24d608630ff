"""Key fetches an unauthenticated caller can cause are bounded: in number (made-up key ids), in
time (an endpoint that drips bytes) and in size (a 200 MB key set). Real HTTP on loopback: the
fake IdP for the load balancer's key endpoint, the hostile upstream for the broken ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from app.team.alb import ALBVerifier
from app.team.identity import AuthError, IdentityUnavailable
from app.team.jwks import UNKNOWN_KID_BURST, UNKNOWN_KID_EVERY_S, JWKSCache
from tests.fakes.hostile import HUGE_BYTES, HostileUpstream, sent
from tests.fakes.idp import FakeIdP, make_key

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as up:
        yield up


def test_made_up_key_ids_cannot_make_the_gateway_fetch_per_request(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = ALBVerifier(ARN, keys_url=idp.alb_keys_url, clock=clock)
    good = idp.alb_token("bob@corp.example", signer=ARN)
    forged = [idp.alb_token("mallory@corp.example", signer=ARN, key=make_key("ES256", kid=f"made-up-{i}"))
              for i in range(300)]

    async def scenario() -> tuple[int, int]:
        assert await v.verify({"x-amzn-oidc-data": good})  # the real key, fetched once
        refused = 0
        for token in forged:
            with pytest.raises((AuthError, IdentityUnavailable)):
                await v.verify({"x-amzn-oidc-data": token})
            refused += 1
        # the flood never stops the real key, known already, from verifying
        got = await v.verify({"x-amzn-oidc-data": good})
        assert got is not None and got.user == "bob@corp.example"
        during = idp.fetches("/alb")
        # a rotation after the flood is followed once the limiter has a fetch again
        idp.rotate("alb")
        clock.t += UNKNOWN_KID_EVERY_S
        rotated = await v.verify({"x-amzn-oidc-data": idp.alb_token("carol@corp.example", signer=ARN)})
        assert rotated is not None and rotated.user == "carol@corp.example"
        await v.aclose()
        return refused, during

    refused, fetches = asyncio.run(scenario())
    print(f"300 made-up key ids: {fetches} fetches of the key endpoint (1 for the real key)")
    assert refused == 300
    assert fetches <= 1 + UNKNOWN_KID_BURST, f"{fetches} fetches"


def _timed(cache: JWKSCache, limit_s: float) -> tuple[BaseException | None, float]:
    async def scenario() -> BaseException | None:
        try:
            await asyncio.wait_for(cache.get("any"), limit_s)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            return exc
        finally:
            await cache.aclose()
        return None

    t0 = time.monotonic()
    exc = asyncio.run(scenario())
    return exc, time.monotonic() - t0


def test_a_dripping_key_endpoint_holds_a_request_for_the_deadline_only(hostile: HostileUpstream) -> None:
    hostile.behave("drip_200")
    cache = JWKSCache(hostile.url + "/jwks", source="iap", timeout_s=3.0)
    exc, took = _timed(cache, 30.0)
    print(f"dripping JWKS endpoint: refused after {took:.1f} s")
    assert isinstance(exc, IdentityUnavailable), repr(exc)
    assert "within 3 s" in exc.message and (exc.status, exc.error_type) != (500, "api_error")
    assert took < 5.0


def test_a_huge_key_set_is_never_read_whole(hostile: HostileUpstream) -> None:
    hostile.behave("huge_200")
    cache = JWKSCache(hostile.url + "/jwks", source="iap", timeout_s=10.0)
    exc, took = _timed(cache, 30.0)
    written = sent["huge_200"]
    print(f"200 MB JWKS: refused after {took:.2f} s, {written >> 20} MB written by the endpoint before it was cut")
    assert isinstance(exc, IdentityUnavailable), repr(exc)
    assert "larger than 1 MB" in exc.message
    assert written < HUGE_BYTES // 4
