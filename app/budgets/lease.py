"""Budget leases: a person far from their caps is admitted in memory, without a database round trip.

Admission (``admission.py``) holds each request's expected cost in the database in one
transaction under the budget lock: exact, but a round trip and a global lock per request, which
made team mode's throughput a third of its throughput without budgets. Far from every cap that
exactness buys nothing a cheaper scheme cannot give, so this instance *leases* room instead:

- A lease is one hold in ``budget_holds`` per counter of a set of counters (a person's request
  falls under, say, ``all``, ``user:alice`` and ``group:eng``), under its own id
  (``lease:<instance>:<process>:<n>``), of ``amount``. Every other instance and request counts it
  like any hold.
- Requests whose budgets fall on those counters are admitted against it locally while the charges
  of the requests it covers fit in ``amount``: a request's charge is what admission would hold
  for it (its expected cost plus the exposure of a prompt whose price is not known yet); a stream's
  charge grows with its cost as its hold would (``hold_meter.py``); once finished, its real cost.
- What the lease covers only goes up between renewals: a request whose row settled (its cost now
  in the counter) still counts, so the database counts it twice until the next renewal: never
  less than what is spent and in flight.
- A renewal is one transaction like admission's: it reads the counters and every other hold under
  the lock, and sets ``amount`` to the charges of the requests still unsettled plus room for about
  ``LEASE_REQUESTS`` more, but only while the room left under every budget's ``warn_at`` (so no
  answer misses its warning headers) stays above ``LEASE_FAR`` such leases. Closer to a cap the
  lease shrinks to what its requests still hold and requests go through the exact per-request path;
  a stream already admitted on it grows only into room that is really free.

So a lease never lets the spend pass a cap; near a cap nothing changes; and far from it a
request costs a dictionary update. An instance that dies with a lease has it charged by the hold
reaper like any hold (at its amount: at most one lease above what its requests cost).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.budgets.store import BudgetStore, CounterKey, Meta, Numbers, Settling

LEASE_REQUESTS = 32  # a lease holds room for about this many requests like the one that renewed it
LEASE_FAR = 4  # it is granted only while the room left is at least this many such leases
LEASE_AGE_S = 60.0  # a lease in use is renewed at least this often (its row's expiry moves on)

RoomOf = Callable[[Numbers], float]  # the room left under a request's budgets (warn_at included)


@dataclass
class Lease:
    id: str
    keys: tuple[CounterKey, ...]
    amount: float = 0.0  # what its rows in the database hold on each counter
    members: dict[str, float] = field(default_factory=dict)  # request id -> its charge now
    since: dict[str, float] = field(default_factory=dict)  # request id -> when it joined (monotonic)
    used: float = 0.0  # the members' charges plus the settled ones' costs since the last renewal
    renewed_at: float = -math.inf
    lock: threading.Lock = field(default_factory=threading.Lock)


class Leases:
    """This instance's leases, one per set of counters, over the admission's ``BudgetStore``."""

    def __init__(self, store: BudgetStore, instance: str, ttl_s: float) -> None:
        self.store = store
        self.instance = instance
        self.ttl_s = ttl_s
        self._by_keys: dict[tuple[CounterKey, ...], Lease] = {}
        self._of: dict[str, Lease] = {}  # member request id -> its lease
        self._ids = itertools.count(1)
        self._prefix = f"lease:{instance}:{os.getpid()}:{os.urandom(3).hex()}:"
        self._lock = threading.Lock()
        self.renewals = 0  # transactions made (for the bench and the tests)

    def lease_of(self, keys: tuple[CounterKey, ...]) -> Lease | None:
        return self._by_keys.get(keys)

    def take(self, keys: tuple[CounterKey, ...], request_id: str, charge: float) -> bool:
        """Admit ``request_id`` on the lease of ``keys`` in memory if its charge fits (no I/O)."""
        lease = self._by_keys.get(keys)
        if lease is None or time.monotonic() - lease.renewed_at > LEASE_AGE_S:
            return False
        with lease.lock:
            if lease.used + charge > lease.amount or lease.amount <= 0:
                return False
            lease.members[request_id] = charge
            lease.since[request_id] = time.monotonic()
            lease.used += charge
        self._of[request_id] = lease
        return True

    def renew(self, keys: tuple[CounterKey, ...], request_id: str | None, charge: float, room_of: RoomOf,
              now: float, settling: Settling | None = None, far: bool = True, meta: Meta | None = None) -> bool:
        """One transaction: set the lease to what its unsettled requests hold, plus ``charge`` for
        ``request_id`` (a new request, or more for a stream it covers) and room for more requests
        when ``far``; True when ``request_id`` got its charge. ``meta``: the sender and route its
        rows record (the hold reaper's row for a dead instance's lease names them). Not far enough (or no room): the
        lease shrinks to its requests' charges and ``request_id`` gets nothing from it."""
        with self._lock:
            lease = self._by_keys.get(keys)
            if lease is None:
                if request_id is None:
                    return False
                lease = self._by_keys[keys] = Lease(self._prefix + str(next(self._ids)), keys)
        granted = False

        def decide(numbers: Numbers) -> tuple[bool, list[tuple[CounterKey, float, float]]]:
            nonlocal granted
            with lease.lock:  # under the database's budget lock: no settlement runs meanwhile
                self._expire(lease)
                base = sum(lease.members.values())
                room = room_of(numbers) - base
                chunk = LEASE_REQUESTS * charge
                if request_id is not None and charge > 0 and (
                        (far and room - charge >= LEASE_FAR * chunk) or (not far and charge <= room)):
                    granted = True
                    lease.members[request_id] = lease.members.get(request_id, 0.0) + charge
                    lease.since.setdefault(request_id, time.monotonic())
                    base += charge
                    lease.amount = base + (chunk if far else 0.0)
                else:
                    lease.amount = base
                lease.used = base
                return granted, [(k, lease.amount, 0.0) for k in keys]

        try:
            self.store.reserve(lease.id, self.instance, list(keys), decide, now, self.ttl_s, settling, meta)
        except BaseException:
            with lease.lock:  # the row keeps what it held; nothing more is admitted on it until one succeeds
                if granted and request_id is not None:
                    lease.members[request_id] -= charge
                    if lease.members[request_id] <= 0:
                        del lease.members[request_id]
                        lease.since.pop(request_id, None)
                lease.amount = 0.0
            raise
        self.renewals += 1
        lease.renewed_at = time.monotonic()
        if granted and request_id is not None:
            self._of[request_id] = lease
        elif lease.amount <= 0 and not lease.members:
            with self._lock:
                if self._by_keys.get(keys) is lease:
                    del self._by_keys[keys]
            self.store.release(lease.id)
        return granted

    def _expire(self, lease: Lease) -> None:
        """Members older than a hold may live (their rows never came: a hold would have expired
        too) stop counting (under ``lease.lock``)."""
        old = time.monotonic() - self.ttl_s
        for rid in [r for r, t in lease.since.items() if t < old]:
            lease.members.pop(rid, None)
            lease.since.pop(rid, None)
            self._of.pop(rid, None)

    def grow(self, request_id: str, charge: float) -> bool | None:
        """A stream on a lease now needs ``charge``: True if that fits in memory, False if not
        (``renew`` with ``far=False`` then), None when the request is on no lease."""
        lease = self._of.get(request_id)
        if lease is None:
            return None
        with lease.lock:
            old = lease.members.get(request_id, 0.0)
            if charge <= old:
                return True
            if lease.used + charge - old > lease.amount:
                return False
            lease.members[request_id] = charge
            lease.used += charge - old
        return True

    def keys_of(self, request_id: str) -> tuple[CounterKey, ...] | None:
        lease = self._of.get(request_id)
        return lease.keys if lease is not None else None

    def charge_of(self, request_id: str) -> float:
        lease = self._of.get(request_id)
        return lease.members.get(request_id, 0.0) if lease is not None else 0.0

    def finished(self, request_id: str, cost: float) -> None:
        """The request ended: it is charged at its real cost from now on (its row is on its way)."""
        lease = self._of.get(request_id)
        if lease is None:
            return
        with lease.lock:
            old = lease.members.get(request_id)
            if old is not None:
                lease.members[request_id] = cost
                lease.used += cost - old  # less than it held: room for others; more: it was cut late

    def settled(self, ids: Sequence[str]) -> None:
        """Their rows are committed (their costs are in the counters): they leave their lease, whose
        use keeps their costs until the next renewal reads the counters."""
        for i in ids:
            lease = self._of.pop(i, None)
            if lease is not None:
                with lease.lock:
                    lease.members.pop(i, None)
                    lease.since.pop(i, None)

    def close(self) -> None:
        """The instance stops (its requests have ended): its leases' rows go. The rows of requests
        the writer has not committed yet still settle the counters when it does."""
        with self._lock:
            leases, self._by_keys = list(self._by_keys.values()), {}
        for lease in leases:
            try:
                self.store.release(lease.id)
            except Exception:  # the database is away: the row expires, or the reaper charges it
                pass

    def clear(self) -> None:
        """The budgets changed: lease nothing more on the old terms (their rows shrink as their
        requests end: the next renewal, or they expire)."""
        with self._lock:
            for lease in self._by_keys.values():
                with lease.lock:
                    lease.amount = 0.0
