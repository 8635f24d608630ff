"""What a verified person may use and spend: plain functions over plain data.

- ``user_groups``: the ``[[team.groups]]`` a person is in: a ``members`` pattern matches their
  e-mail (``"*@corp.example"``, ``"alice@corp.example"``), a ``"group:PATTERN"`` member matches
  one of the groups their identity carries (the IdP's groups claim, a key's ``--group``), or the
  group's own name is one of those groups.
- ``decide``: may this person send this request to this backend and model? Allowed when any of
  their groups allows both (patterns are globs, case-insensitive). The model is the one the
  upstream is asked for, matched as written and in its comparable forms (``app/config/model_ids.py``:
  a Bedrock id ``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` matches ``claude-sonnet-*``);
  the name the client asked for never widens it (a pin, a ``[routes]`` rule, a fallback or a
  downgrade may send something else upstream). The output cap is the most
  generous among the groups that allow it. Otherwise a refusal naming the rule, which
  ``PolicyDenied`` turns into 403 ``permission_error``. With no groups configured everyone
  verified may use everything (identity and budgets only).
- ``permitted``: the routing candidates (rules, pins, failover) a person may use, in order.
- ``subject_of``: the counter a ``[[budgets]]`` row charges for a request's sender, or None when
  it does not apply to them: ``each-user`` → ``user:EMAIL`` of this user; ``user:EMAIL``,
  ``group:NAME``, ``all``, ``backend:ID`` as written, when they apply (admission, app/budgets/admission.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.config.model_ids import canonical_model, light_model
from app.config.team import GroupPolicy, allows_model, pattern_match
from app.errors import ApiError
from app.team.identity import Identity


def user_groups(groups: Sequence[GroupPolicy], identity: Identity) -> tuple[str, ...]:
    """The names of the configured groups this person is in, in config order."""
    claimed = tuple(g.lower() for g in identity.groups)
    out = []
    for g in groups:
        if g.name.lower() in claimed:
            out.append(g.name)
            continue
        for m in g.members:
            if m.startswith("group:"):
                if any(pattern_match(m[6:], c) for c in claimed):
                    out.append(g.name)
                    break
            elif pattern_match(m, identity.user):
                out.append(g.name)
                break
    return tuple(out)


def allows_backend(group: GroupPolicy, backend: str) -> bool:
    return group.backends is None or any(pattern_match(p, backend) for p in group.backends)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    groups: tuple[str, ...]  # the person's groups
    max_output_tokens: int | None = None  # the cap to apply (None: no team cap)
    rule: str | None = None  # the refusing rule, e.g. 'team.groups "eng" models'
    message: str | None = None  # the sentence for the client when refused

    def cap(self, requested: int | None) -> int | None:
        """``max_tokens`` as sent upstream: the request's, lowered to the team's cap."""
        if self.max_output_tokens is None:
            return requested
        return self.max_output_tokens if requested is None else min(requested, self.max_output_tokens)


class PolicyDenied(ApiError):
    """A verified person asking for what their groups do not allow: 403 ``permission_error``."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(403, "permission_error", decision.message or "Patchbay: the team policy refuses this request.")
        self.decision = decision


def _names(items: tuple[str, ...] | None) -> str:
    return "any" if items is None else (", ".join(items) if items else "none")


def decide(groups: Sequence[GroupPolicy], identity: Identity, backend: str, model: str,
           *, requested_model: str | None = None) -> Decision:
    """``model`` is what the backend will be asked for, the name the groups' patterns must allow;
    ``requested_model`` what the client named, shown in a refusal only: a client that names an
    allowed model while a pin or a rule sends another upstream gets no further for it."""
    if not groups:
        return Decision(True, ())
    mine = user_groups(groups, identity)
    if not mine:
        return Decision(False, (), rule="team.groups members", message=(
            f"Patchbay: {identity.user} is in none of this team gateway's groups, so it may not use any backend. "
            "Ask your Patchbay admin to add you to a [[team.groups]] members list."))
    policies = [g for g in groups if g.name in mine]
    names = [model, light_model(model), canonical_model(model)] if model else []
    by_backend = [g for g in policies if allows_backend(g, backend)]
    shown = model if not requested_model or requested_model == model else f"{requested_model} ({model})"
    label = ", ".join(f'"{g.name}"' for g in policies)
    if not by_backend:
        detail = "; ".join(f'"{g.name}" allows {_names(g.backends)}' for g in policies)
        return Decision(False, mine, rule=f"team.groups {label} backends", message=(
            f"Patchbay: {identity.user} may not use the backend {backend}: the team policy ([[team.groups]] "
            f"{detail}) does not allow it. Pick an allowed backend, or ask your Patchbay admin."))
    ok = [g for g in by_backend if allows_model(g, names)]
    if not ok:
        detail = "; ".join(f'"{g.name}" allows models {_names(g.models)}' for g in by_backend)
        return Decision(False, mine, rule=f"team.groups {label} models", message=(
            f"Patchbay: {identity.user} may not use the model {shown} on {backend}: the team policy "
            f"([[team.groups]] {detail}) does not allow it. Pick an allowed model, or ask your Patchbay admin."))
    caps = [g.max_output_tokens for g in ok]
    cap = None if any(c is None for c in caps) else max(c for c in caps if c is not None)
    return Decision(True, mine, cap)


def permitted(groups: Sequence[GroupPolicy], identity: Identity,
              candidates: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (backend, model) routing candidates this person may use, in their order."""
    return [c for c in candidates if decide(groups, identity, c[0], c[1]).allowed]


# --------------------------------------------------------------------------- budgets


def subject_of(scope: str, user: str | None, groups: Sequence[str]) -> str | None:
    """The counter a budget of ``scope`` charges for this request's sender, or None when it does
    not apply to them: ``each-user`` → ``user:<their id>``; ``user:EMAIL`` → the same when it is
    them (case-insensitive); ``group:NAME`` when they are in it; ``all`` and ``backend:ID`` as
    written (whether a backend budget applies depends on the route: see ``budget_matches``).
    ``user`` is the id as the ledger rows store it (``Identity.user``), so a counter seeded from
    the rows and settled by them names the same person."""
    kind, _, value = scope.partition(":")
    if scope == "all" or kind == "backend":
        return scope
    if user is None:
        return None
    if scope == "each-user" or (kind == "user" and value.lower() == user.lower()):
        return f"user:{user}"
    if kind == "group" and value in groups:
        return scope
    return None
