"""Team mode: who sent each request (identity), and what they may use and spend (policy).

- ``identity``: the ``Identity`` a request carries and the chain of verifiers that finds it;
- ``jwks``: the signing-key cache every JWT source shares;
- one file per source: ``iap``, ``alb``, ``cloudflare``, ``oidc`` (signed JWTs) and ``keys``
  (per-user keys an admin issues, stored as hashes by a ``KeyStore`` such as ``keystore_sqlite``);
- ``config``: the ``[team]`` and ``[[team.groups]]`` sections;
- ``policy``: plain functions over plain data: groups, allow-lists, budget scopes;
- ``cli``: ``patchbay team key create|list|revoke``.

Nothing here imports Qt; signatures are checked by PyJWT (with ``cryptography``), never by our code.
"""
