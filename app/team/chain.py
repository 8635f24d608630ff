"""The ``IdentityChain`` a ``[team]`` section asks for, built in its ``identity`` order."""

from __future__ import annotations

import httpx

from app.config.team import TeamConfig
from app.team.alb import ALBVerifier
from app.team.cloudflare import CloudflareVerifier
from app.team.iap import IAPVerifier
from app.team.identity import IdentityChain, Verifier
from app.team.keys import KeyStore, KeysVerifier
from app.team.oidc import OIDCVerifier


def build_chain(team: TeamConfig, *, keys: KeyStore | None = None, client: httpx.AsyncClient | None = None,
                keys_outage_grace_s: float = 0.0, login: Verifier | None = None) -> IdentityChain:
    """``keys`` is required when ``identity`` lists "keys". ``client`` is shared by the sources
    that fetch signing keys (one is made per source when None). ``keys_outage_grace_s``: how long a
    verified key's last answer stands while the key store cannot be reached (``KeysVerifier``).
    ``login``: the verifier of Patchbay's own sign-in tokens (``app/team/login``), asked first."""
    verifiers: list[Verifier] = [login] if login is not None else []  # [team.login]: its tokens first
    skew = team.clock_skew_s
    for source in team.identity:
        if source == "iap":
            assert team.iap_audience
            verifiers.append(IAPVerifier(team.iap_audience, jwks_url=team.iap_jwks_url, client=client,
                                         user_claim=team.user_claim, groups_claim=team.groups_claim, leeway_s=skew))
        elif source == "alb":
            assert team.alb_arn
            verifiers.append(ALBVerifier(team.alb_arn, region=team.alb_region, keys_url=team.alb_keys_url,
                                         client=client, user_claim=team.user_claim, groups_claim=team.groups_claim,
                                         leeway_s=skew))
        elif source == "cloudflare":
            assert team.cloudflare_team and team.cloudflare_audience
            verifiers.append(CloudflareVerifier(team.cloudflare_team, team.cloudflare_audience,
                                                certs_url=team.cloudflare_certs_url, client=client,
                                                user_claim=team.user_claim, groups_claim=team.groups_claim,
                                                leeway_s=skew))
        elif source == "oidc":
            assert team.oidc_issuer and team.oidc_audience
            verifiers.append(OIDCVerifier(team.oidc_issuer, team.oidc_audience, jwks_url=team.oidc_jwks_url,
                                          client=client, user_claim=team.user_claim,
                                          groups_claim=team.groups_claim, leeway_s=skew))
        elif source == "keys":
            if keys is None:
                raise ValueError('identity lists "keys" but no key store was given')
            verifiers.append(KeysVerifier(keys, outage_grace_s=keys_outage_grace_s))
    return IdentityChain(verifiers)
