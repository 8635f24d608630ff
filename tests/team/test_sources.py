"""Each identity source against the fake IdP on loopback: real tokens, real signatures, real
key fetches. Everything refused is refused with 401 authentication_error and a message that
never quotes the token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from app.team.alb import ALBVerifier, region_of_arn
from app.team.cloudflare import CloudflareVerifier
from app.team.iap import IAPVerifier
from app.team.identity import AuthError, Identity, IdentityChain, IdentityUnavailable
from app.team.oidc import OIDCVerifier
from tests.fakes.idp import FakeIdP

IAP_AUD = "/projects/123456789/global/backendServices/987654321"
ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"
OTHER_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other/0123456789abcdef"
CF_AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def _verify(v: Any, headers: dict[str, str]) -> Identity | None:
    try:
        return await v.verify(headers)
    finally:
        await v.aclose()


def verify(v: Any, headers: dict[str, str]) -> Identity | None:
    return run(_verify(v, headers))


def refused(v: Any, headers: dict[str, str], token: str | None = None) -> AuthError:
    with pytest.raises(AuthError) as info:
        verify(v, headers)
    err = info.value
    assert (err.status, err.error_type) == (401, "authentication_error")
    if token:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in err.message
    return err


def iap(idp: FakeIdP, **kw: Any) -> IAPVerifier:
    return IAPVerifier(IAP_AUD, jwks_url=idp.iap_jwks_url, **kw)


def alb(idp: FakeIdP, **kw: Any) -> ALBVerifier:
    return ALBVerifier(ARN, keys_url=idp.alb_keys_url, **kw)


def cloudflare(idp: FakeIdP, **kw: Any) -> CloudflareVerifier:
    return CloudflareVerifier("corp", CF_AUD, certs_url=idp.cloudflare_certs_url, **kw)


def oidc(idp: FakeIdP, **kw: Any) -> OIDCVerifier:
    return OIDCVerifier(idp.oidc_issuer, "patchbay", **kw)


def h(name: str, token: str) -> dict[str, str]:
    return {name: token}


# --------------------------------------------------------------------------- Google IAP


def test_iap_accepts_its_signed_assertion(idp: FakeIdP) -> None:
    token = idp.iap_token("Alice@Corp.Example", aud=IAP_AUD)
    got = verify(iap(idp), h("x-goog-iap-jwt-assertion", token))
    assert got == Identity("alice@corp.example", (), "iap")


def test_iap_never_trusts_the_unsigned_email_header(idp: FakeIdP) -> None:
    forged = {"x-goog-authenticated-user-email": "accounts.google.com:ceo@corp.example",
              "x-goog-authenticated-user-id": "accounts.google.com:1234"}
    assert verify(iap(idp), forged) is None
    chain = IdentityChain([iap(idp)])
    with pytest.raises(AuthError) as info:
        run(chain.identify(forged))
    assert info.value.status == 401 and "x-goog-iap-jwt-assertion" in info.value.message
    # next to a valid assertion for alice, a forged header naming someone else changes nothing
    token = idp.iap_token("alice@corp.example", aud=IAP_AUD)
    got = verify(iap(idp), {**forged, "x-goog-iap-jwt-assertion": token})
    assert got is not None and got.user == "alice@corp.example"


def test_iap_refuses_wrong_audience_issuer_and_times(idp: FakeIdP) -> None:
    now = int(time.time())
    cases = {
        "another audience": idp.iap_token("a@corp.example", aud="/projects/1/global/backendServices/2"),
        "another issuer": idp.iap_token("a@corp.example", aud=IAP_AUD, iss="https://evil.example"),
        "has expired": idp.iap_token("a@corp.example", aud=IAP_AUD, exp=now - 60),
        "not valid yet": idp.iap_token("a@corp.example", aud=IAP_AUD, iat=now + 120),
        "lacks the required 'aud'": idp.sign("iap", {"email": "a@corp.example", "iat": now, "exp": now + 60,
                                                     "iss": "https://cloud.google.com/iap"}),
    }
    for words, token in cases.items():
        err = refused(iap(idp), h("x-goog-iap-jwt-assertion", token), token)
        assert words in err.message, (words, err.message)


def test_iap_allows_thirty_seconds_of_clock_skew(idp: FakeIdP) -> None:
    now = int(time.time())
    token = idp.iap_token("a@corp.example", aud=IAP_AUD, exp=now - 20)
    assert verify(iap(idp), h("x-goog-iap-jwt-assertion", token)) is not None
    token = idp.iap_token("a@corp.example", aud=IAP_AUD, exp=now - 40)
    refused(iap(idp), h("x-goog-iap-jwt-assertion", token))


def test_iap_refuses_alg_none_and_hs256_signed_with_the_public_key(idp: FakeIdP) -> None:
    claims = idp.claims_for("iap", "a@corp.example", IAP_AUD)
    for token in (idp.unsigned_token(claims, kid=idp.current("iap").kid), idp.hs256_with_public_key("iap", claims)):
        err = refused(iap(idp), h("x-goog-iap-jwt-assertion", token), token)
        assert "signing algorithm" in err.message and "never accepted" in err.message


def test_iap_refuses_a_malformed_or_tampered_assertion(idp: FakeIdP) -> None:
    refused(iap(idp), h("x-goog-iap-jwt-assertion", "not-a-jwt"))
    token = idp.iap_token("alice@corp.example", aud=IAP_AUD)
    other = idp.iap_token("mallory@corp.example", aud=IAP_AUD)
    spliced = ".".join([token.split(".")[0], other.split(".")[1], token.split(".")[2]])
    err = refused(iap(idp), h("x-goog-iap-jwt-assertion", spliced), spliced)
    assert "does not match" in err.message


def test_unknown_kid_refetches_once_then_is_refused_and_refetches_are_rate_limited(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = iap(idp, clock=clock)
    good = idp.iap_token("a@corp.example", aud=IAP_AUD)
    stranger = idp.token_with_unknown_kid("iap", idp.claims_for("iap", "a@corp.example", IAP_AUD))

    async def scenario() -> None:
        assert await v.verify(h("x-goog-iap-jwt-assertion", good)) is not None
        assert idp.fetches("/iap/public_key-jwk") == 1
        clock.t += 31
        for _ in range(3):  # one refetch for the unknown kid, not three
            with pytest.raises(AuthError) as info:
                await v.verify(h("x-goog-iap-jwt-assertion", stranger))
            assert "'never-published'" in info.value.message
        assert idp.fetches("/iap/public_key-jwk") == 2
        clock.t += 31  # the rate limit has passed: one more try
        with pytest.raises(AuthError):
            await v.verify(h("x-goog-iap-jwt-assertion", stranger))
        assert idp.fetches("/iap/public_key-jwk") == 3
        # concurrent requests with unknown kids share one fetch
        clock.t += 31
        results = await asyncio.gather(*(v.verify(h("x-goog-iap-jwt-assertion", stranger)) for _ in range(10)),
                                       return_exceptions=True)
        assert all(isinstance(r, AuthError) for r in results)
        assert idp.fetches("/iap/public_key-jwk") == 4
        await v.aclose()

    run(scenario())


def test_iap_key_rotation_is_followed(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = iap(idp, clock=clock)
    old_key = idp.current("iap")

    async def scenario() -> None:
        assert await v.verify(h("x-goog-iap-jwt-assertion", idp.iap_token("a@corp.example", aud=IAP_AUD)))
        idp.rotate("iap")  # the new key signs, the old one is withdrawn
        clock.t += 31
        got = await v.verify(h("x-goog-iap-jwt-assertion", idp.iap_token("b@corp.example", aud=IAP_AUD)))
        assert got is not None and got.user == "b@corp.example"
        assert idp.fetches("/iap/public_key-jwk") == 2
        old = idp.sign("iap", idp.claims_for("iap", "c@corp.example", IAP_AUD), key=old_key)
        with pytest.raises(AuthError):  # a withdrawn key no longer verifies
            await v.verify(h("x-goog-iap-jwt-assertion", old))
        await v.aclose()

    run(scenario())


def test_keys_older_than_max_age_are_refreshed(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = iap(idp, clock=clock)

    async def scenario() -> None:
        for n in range(3):
            assert await v.verify(h("x-goog-iap-jwt-assertion", idp.iap_token(f"u{n}@corp.example", aud=IAP_AUD)))
        assert idp.fetches("/iap/public_key-jwk") == 1  # cached: no fetch per request
        clock.t += 3601
        assert await v.verify(h("x-goog-iap-jwt-assertion", idp.iap_token("z@corp.example", aud=IAP_AUD)))
        assert idp.fetches("/iap/public_key-jwk") == 2
        await v.aclose()

    run(scenario())


def test_an_unreachable_key_endpoint_is_a_503_not_a_bad_credential(idp: FakeIdP) -> None:
    v = IAPVerifier(IAP_AUD, jwks_url="http://127.0.0.1:9/iap/public_key-jwk")
    with pytest.raises(IdentityUnavailable) as info:
        verify(v, h("x-goog-iap-jwt-assertion", idp.iap_token("a@corp.example", aud=IAP_AUD)))
    assert (info.value.status, info.value.error_type) == (503, "api_error")
    assert "127.0.0.1:9" in info.value.message and "bug" not in info.value.message


# --------------------------------------------------------------------------- AWS ALB


def test_alb_accepts_its_padded_assertion_and_fetches_the_key_by_kid(fresh_idp: FakeIdP) -> None:
    idp = fresh_idp
    token = idp.alb_token("bob@corp.example", signer=ARN, groups=["eng"])
    assert "=" in token  # the ALB's base64 padding is there, and must be accepted as it is
    assert verify(alb(idp), h("x-amzn-oidc-data", token)) == Identity("bob@corp.example", ("eng",), "alb")
    assert idp.fetches(f"/alb/{idp.current('alb').kid}") == 1
    assert region_of_arn(ARN) == "us-east-1"


def test_alb_refuses_another_load_balancers_signer_and_the_plain_identity_header(idp: FakeIdP) -> None:
    token = idp.alb_token("bob@corp.example", signer=OTHER_ARN)
    err = refused(alb(idp), h("x-amzn-oidc-data", token), token)
    assert "another load balancer" in err.message
    assert verify(alb(idp), {"x-amzn-oidc-identity": "bob@corp.example",
                             "x-amzn-oidc-accesstoken": "eyJhbGciOi.fake.token"}) is None


def test_alb_refuses_expired_unsigned_and_confused_tokens(idp: FakeIdP) -> None:
    expired = idp.alb_token("bob@corp.example", signer=ARN, exp=int(time.time()) - 60)
    assert "expired" in refused(alb(idp), h("x-amzn-oidc-data", expired), expired).message
    claims = idp.claims_for("alb", "bob@corp.example", "x")
    for token in (idp.unsigned_token(claims), idp.hs256_with_public_key("alb", claims)):
        refused(alb(idp), h("x-amzn-oidc-data", token), token)


def test_alb_unknown_kid_asks_the_endpoint_once(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = alb(idp, clock=clock)
    from tests.fakes.idp import make_key

    stranger = idp.alb_token("bob@corp.example", signer=ARN, key=make_key("ES256", kid="3f1e-unknown"))

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(AuthError) as info:
                await v.verify(h("x-amzn-oidc-data", stranger))
            assert "'3f1e-unknown'" in info.value.message
        assert idp.fetches("/alb/3f1e-unknown") == 1
        clock.t += 31
        with pytest.raises(AuthError):
            await v.verify(h("x-amzn-oidc-data", stranger))
        assert idp.fetches("/alb/3f1e-unknown") == 2
        # a key id that would leave the key endpoint's path is refused without a fetch
        bad = idp.alb_token("bob@corp.example", signer=ARN, kid="../../etc/passwd")
        with pytest.raises(AuthError):
            await v.verify(h("x-amzn-oidc-data", bad))
        assert idp.fetches("/alb") == 2
        await v.aclose()

    run(scenario())


def test_alb_rotation_is_followed(fresh_idp: FakeIdP) -> None:
    idp = fresh_idp
    v = alb(idp)

    async def scenario() -> None:
        assert await v.verify(h("x-amzn-oidc-data", idp.alb_token("a@corp.example", signer=ARN)))
        idp.rotate("alb")
        got = await v.verify(h("x-amzn-oidc-data", idp.alb_token("b@corp.example", signer=ARN)))
        assert got is not None and got.user == "b@corp.example"
        await v.aclose()

    run(scenario())


# --------------------------------------------------------------------------- Cloudflare Access


def test_cloudflare_accepts_its_assertion_and_checks_the_aud_tag_and_team(idp: FakeIdP) -> None:
    token = idp.cloudflare_token("carol@corp.example", aud=CF_AUD)
    got = verify(cloudflare(idp), h("cf-access-jwt-assertion", token))
    assert got == Identity("carol@corp.example", (), "cloudflare")
    wrong_aud = idp.cloudflare_token("carol@corp.example", aud="0" * 64)
    assert "another audience" in refused(cloudflare(idp), h("cf-access-jwt-assertion", wrong_aud), wrong_aud).message
    other_team = idp.cloudflare_token("carol@corp.example", aud=CF_AUD, iss="https://evil.cloudflareaccess.com")
    assert "another issuer" in refused(cloudflare(idp), h("cf-access-jwt-assertion", other_team)).message


def test_cloudflare_refuses_unsigned_confused_and_expired(idp: FakeIdP) -> None:
    claims = idp.claims_for("cloudflare", "carol@corp.example", CF_AUD)
    for token in (idp.unsigned_token(claims), idp.hs256_with_public_key("cloudflare", claims),
                  idp.cloudflare_token("carol@corp.example", aud=CF_AUD, exp=int(time.time()) - 120)):
        refused(cloudflare(idp), h("cf-access-jwt-assertion", token), token)


def test_cloudflare_keeps_accepting_the_previous_key_during_its_overlap(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = cloudflare(idp, clock=clock)

    async def scenario() -> None:
        before = idp.cloudflare_token("a@corp.example", aud=CF_AUD)
        assert await v.verify(h("cf-access-jwt-assertion", before))
        old_key = idp.current("cloudflare")
        idp.rotate("cloudflare", keep_old=True)  # the old key stays published for seven days
        clock.t += 31
        assert await v.verify(h("cf-access-jwt-assertion", idp.cloudflare_token("b@corp.example", aud=CF_AUD)))
        still = idp.sign("cloudflare", idp.claims_for("cloudflare", "c@corp.example", CF_AUD), key=old_key)
        assert await v.verify(h("cf-access-jwt-assertion", still))
        await v.aclose()

    run(scenario())


# --------------------------------------------------------------------------- OIDC


def test_oidc_uses_the_discovery_document_and_the_groups_claim(fresh_idp: FakeIdP) -> None:
    idp = fresh_idp
    token = idp.oidc_token("dave@corp.example", aud="patchbay", groups=["eng", "oncall"])
    got = verify(oidc(idp), {"authorization": f"Bearer {token}"})
    assert got == Identity("dave@corp.example", ("eng", "oncall"), "oidc")
    assert idp.fetches("/oidc/.well-known/openid-configuration") == 1 and idp.fetches("/oidc/jwks") == 1
    # the same token through x-api-key (Claude Code sends an apiKeyHelper's output as both)
    assert verify(oidc(idp), {"x-api-key": token}) == got


def test_oidc_refuses_each_bad_token(idp: FakeIdP) -> None:
    now = int(time.time())
    claims = idp.claims_for("oidc", "dave@corp.example", "patchbay")
    cases = {
        "signing algorithm": [idp.unsigned_token(claims), idp.hs256_with_public_key("oidc", claims)],
        "expired": [idp.oidc_token("d@corp.example", aud="patchbay", exp=now - 100)],
        "not valid yet": [idp.oidc_token("d@corp.example", aud="patchbay", nbf=now + 300)],
        "another audience": [idp.oidc_token("d@corp.example", aud="someone-else")],
        "another issuer": [idp.oidc_token("d@corp.example", aud="patchbay", iss="https://accounts.google.com")],
        "not verified": [idp.oidc_token("d@corp.example", aud="patchbay", email_verified=False)],
        "no 'email' claim": [idp.oidc_token(None, aud="patchbay")],
        "does not publish": [idp.token_with_unknown_kid("oidc", claims)],
    }
    for words, tokens in cases.items():
        for token in tokens:
            err = refused(oidc(idp), {"authorization": f"Bearer {token}"}, token)
            assert words in err.message, (words, err.message)


def test_oidc_leaves_a_bearer_that_is_no_jwt_to_the_next_source(idp: FakeIdP) -> None:
    assert verify(oidc(idp), {"authorization": "Bearer pbk_notajwt"}) is None
    assert verify(oidc(idp), {}) is None


def test_oidc_discovery_naming_another_issuer_is_refused(idp: FakeIdP) -> None:
    v = OIDCVerifier(idp.oidc_issuer + "-other", "patchbay")
    token = idp.oidc_token("d@corp.example", aud="patchbay")
    with pytest.raises(IdentityUnavailable):
        verify(v, {"authorization": f"Bearer {token}"})


def test_oidc_key_rotation_is_followed(fresh_idp: FakeIdP) -> None:
    idp, clock = fresh_idp, Clock()
    v = oidc(idp, clock=clock)

    async def scenario() -> None:
        t1 = idp.oidc_token("a@corp.example", aud="patchbay")
        assert await v.verify({"authorization": f"Bearer {t1}"})
        idp.rotate("oidc")
        clock.t += 31
        t2 = idp.oidc_token("b@corp.example", aud="patchbay")
        got = await v.verify({"authorization": f"Bearer {t2}"})
        assert got is not None and got.user == "b@corp.example"
        assert idp.fetches("/oidc/.well-known/openid-configuration") == 1  # the document is read once
        assert idp.fetches("/oidc/jwks") == 2
        await v.aclose()

    run(scenario())


def test_a_verified_token_is_not_checked_again_until_it_expires(fresh_idp: FakeIdP) -> None:
    idp = fresh_idp
    v = oidc(idp)
    token = idp.oidc_token("a@corp.example", aud="patchbay", lifetime_s=600)

    async def scenario() -> None:
        first = await v.verify({"authorization": f"Bearer {token}"})
        assert v.cache.get(token) is not None
        assert await v.verify({"authorization": f"Bearer {token}"}) == first
        await v.aclose()

    run(scenario())
    # the cache never outlives the token: one expiring in 5 s is kept at most until exp + skew
    v2 = oidc(idp)
    short = idp.oidc_token("a@corp.example", aud="patchbay", lifetime_s=5)
    assert verify(v2, {"authorization": f"Bearer {short}"}) is not None
    until = v2.cache._items[short][0]
    assert until <= time.time() + 5 + 30 + 1


# --------------------------------------------------------------------------- the chain


def test_chain_tries_sources_in_order_and_reports_the_first_real_problem(idp: FakeIdP) -> None:
    chain = IdentityChain([iap(idp), oidc(idp)])

    async def scenario() -> None:
        token = idp.oidc_token("erin@corp.example", aud="patchbay")
        got = await chain.identify({"authorization": f"Bearer {token}"})
        assert got.source == "oidc"
        both = {"authorization": f"Bearer {token}",
                "x-goog-iap-jwt-assertion": idp.iap_token("frank@corp.example", aud=IAP_AUD)}
        assert (await chain.identify(both)).user == "frank@corp.example"  # iap is listed first
        bad = idp.oidc_token("erin@corp.example", aud="patchbay", exp=int(time.time()) - 100)
        with pytest.raises(AuthError) as info:
            await chain.identify({"authorization": f"Bearer {bad}"})
        assert "expired" in info.value.message
        with pytest.raises(AuthError) as info:
            await chain.identify({})
        assert "x-goog-iap-jwt-assertion" in info.value.message and "Authorization: Bearer" in info.value.message
        await chain.aclose()

    run(scenario())


def test_messages_and_logs_never_carry_the_token(idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    chain = IdentityChain([oidc(idp)])
    token = idp.oidc_token("erin@corp.example", aud="someone-else")
    with pytest.raises(AuthError) as info:
        run(_identify_and_close(chain, {"authorization": f"Bearer {token}"}))
    signature = token.split(".")[2]
    assert signature not in info.value.message and signature not in caplog.text
    assert token.split(".")[1] not in caplog.text


async def _identify_and_close(chain: IdentityChain, headers: dict[str, str]) -> Identity:
    try:
        return await chain.identify(headers)
    finally:
        await chain.aclose()


