"""Claude Code's gateway sign-in (``/login``) served by Patchbay's team mode: ``[team.login]``.

One file per concern: ``settings`` (the config table), ``store`` / ``store_pg`` (device codes,
sign-ins, refresh tokens and the signing key in the ledger's database), ``tokens`` (Patchbay's own
access tokens), ``verifier`` (those tokens as an identity source), ``idp`` (the company's OIDC
issuer, for the browser leg), ``browser`` (the verification page and the callback), ``oauth``
(discovery, device authorization, token and revocation endpoints), ``service`` (the routes),
``cli`` (``patchbay team login …``). docs/team.md, "Sign-in from Claude Code", says how it works.
"""
