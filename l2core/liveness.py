"""Which speakers are alive, judged from their Leases the way client-go's leader election judges a leader.

Every speaker holds the Lease `l2guard-speaker-<node>` and renews it (coordination.k8s.io/v1). A peer is alive
while its lease record keeps changing: `Liveness` notes *when this process observed* a change of a peer's record,
on this process's monotonic clock, and the peer stays alive for the record's leaseDurationSeconds after that
observation. The renewTime written in the lease is never compared with our clock, so clock skew between nodes
cannot kill a peer or keep a dead one alive. This is client-go's rule (tools/leaderelection/leaderelection.go:
`tryAcquireOrRenew` resets `observedTime` whenever the record differs from the one observed, and `isLeaseValid`
is `observedTime + LeaseDurationSeconds > now`).

- A lease seen for the first time counts from the moment it is seen: after a restart, every peer gets one full
  lease duration to show a renewal.
- A released lease (empty holderIdentity, or leaseDurationSeconds <= 1, which is what client-go's `release` writes
  so that the next candidate takes over at once) is not alive from the moment it is observed.
- A deleted lease (`forget`) is not alive.
- While this speaker is cut off from the API server (fail-static), its view of the leases goes stale: every peer
  would look dead one lease duration later. `freeze` keeps `alive()` at the set judged at the freeze, and `thaw`
  (back in contact; before or after the re-list is observed, either works) restarts every known lease's clock at
  the thaw, so a peer that was cut off too gets a full duration to renew before it is judged dead.

This module maps lease names to node names and back (`lease_name`, `node_of_lease`); `Liveness` itself is keyed by
node name, so `alive()` feeds `Planner.set_alive` directly.

Pure: no I/O, no clock (time comes in as `now`, seconds on the caller's monotonic clock), no logging, standard
library only. It does not read Lease objects: the API side passes the few fields it needs as a `LeaseRecord`.

`judge_snapshot` judges leases read once (`l2guard explain --live`), where no renewal can be observed: see there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LEASE_PREFIX = "l2guard-speaker-"
MAX_LEASE_NAME = 253  # a Lease name is a DNS subdomain (Kubernetes object names: at most 253 characters)
RELEASED_DURATION = 1  # seconds; client-go's release() writes LeaseDurationSeconds: 1


def lease_name(node: str) -> str:
    """The Lease the speaker of `node` holds. Raises ValueError when `node` is empty or the name would exceed the
    253 characters Kubernetes allows (a node name may be 253 long, the prefix adds 16)."""
    if not node:
        raise ValueError("a node name must not be empty")
    name = LEASE_PREFIX + node
    if len(name) > MAX_LEASE_NAME:
        raise ValueError(
            f"node name of {len(node)} characters is too long for a speaker lease (at most "
            f"{MAX_LEASE_NAME - len(LEASE_PREFIX)})"
        )
    return name


def node_of_lease(name: str) -> str | None:
    """The node whose speaker holds the Lease `name`, or None when the name is not a speaker lease (other leases
    live in the namespace too: they are no speaker's and must be ignored)."""
    if not name.startswith(LEASE_PREFIX) or len(name) == len(LEASE_PREFIX):
        return None
    return name[len(LEASE_PREFIX) :]


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that liveness reads, as the API side found them. Any difference between two records
    is a renewal (client-go compares the whole record). The resourceVersion is included: the API server only bumps
    it when the object really changed, so it catches any write, and a re-list of an unchanged lease keeps it."""

    holder: str  # spec.holderIdentity; "" when absent
    renew_time: str | None  # spec.renewTime as written (RFC 3339 text); Liveness compares it, never parses it
    duration_seconds: int | None  # spec.leaseDurationSeconds
    resource_version: str  # metadata.resourceVersion

    @property
    def released(self) -> bool:
        """Nobody holds it: no holder, or the 1-second duration client-go's release() writes (or none at all)."""
        return not self.holder or self.duration_seconds is None or self.duration_seconds <= RELEASED_DURATION


@dataclass(frozen=True, slots=True)
class _Observed:
    record: LeaseRecord
    at: float  # when this record was first observed, on our monotonic clock


class Liveness:
    """Peers' liveness from their lease records. Call `observe` for every lease the watch or a re-list delivers
    (ADDED, MODIFIED, or each item of a list), `forget` on DELETED, and read `alive(now)`."""

    def __init__(self) -> None:
        self._leases: dict[str, _Observed] = {}
        self._frozen: frozenset[str] | None = None

    def observe(self, node: str, record: LeaseRecord, now: float) -> None:
        """The lease of `node`'s speaker was seen with `record` at `now`. The clock restarts only when the record
        differs from the last one observed: seeing the same record again (a re-list) proves nothing."""
        seen = self._leases.get(node)
        if seen is None or seen.record != record:
            self._leases[node] = _Observed(record, now)

    def forget(self, node: str) -> None:
        """The lease of `node`'s speaker was deleted: the speaker is not alive."""
        self._leases.pop(node, None)

    def expires_at(self, node: str) -> float | None:
        """When `node`'s speaker stops being alive unless a renewal is observed first (on the caller's clock), or
        None when it holds no lease (unknown, deleted or released). It is alive while `now < expires_at`."""
        seen = self._leases.get(node)
        if seen is None or seen.record.released:
            return None
        assert seen.record.duration_seconds is not None  # not released
        return seen.at + seen.record.duration_seconds

    def next_expiry(self, now: float) -> float | None:
        """The earliest moment after `now` at which a speaker alive now expires: when the caller must look again
        (replan) if no lease event comes first. None when no alive speaker will expire, or while frozen."""
        if self._frozen is not None:
            return None
        times = [t for t in (self.expires_at(node) for node in self._leases) if t is not None and t > now]
        return min(times, default=None)

    def alive(self, now: float) -> frozenset[str]:
        """The nodes whose speaker is alive at `now`; while frozen, the set judged at the freeze."""
        if self._frozen is not None:
            return self._frozen
        out = []
        for node in self._leases:
            expiry = self.expires_at(node)
            if expiry is not None and now < expiry:
                out.append(node)
        return frozenset(out)

    def freeze(self, now: float) -> None:
        """This speaker lost the API server: keep judging peers as they are at `now` until `thaw`. Observations
        made meanwhile are kept, but do not change `alive()`. Freezing while frozen changes nothing."""
        if self._frozen is None:
            self._frozen = self.alive(now)

    def thaw(self, now: float) -> None:
        """Back in contact with the API server: judge from observations again, and restart the clock at `now` of
        the leases that were alive at the freeze, since renewals made while we could not see them were missed, not
        absent. A lease already expired at the freeze stays expired (its speaker was dead before we lost contact);
        a lease renewed meanwhile was observed anew and keeps that time."""
        frozen = self._frozen
        if frozen is None:
            return
        self._frozen = None
        self._leases = {
            node: _Observed(seen.record, max(seen.at, now) if node in frozen else seen.at)
            for node, seen in self._leases.items()
        }


# ----- one snapshot (explain --live) ------------------------------------------------------------------------------
#
# A one-shot read sees each lease once and cannot observe renewals, so `Liveness` (which counts a lease first seen
# as alive for a full duration) would call every held lease alive, even one whose speaker died an hour ago. A
# snapshot is judged by time instead: a held lease is alive while renewTime + leaseDurationSeconds is later than
# `server_now`, the API server's clock when the leases were listed (its HTTP Date header). The reader's own clock
# is never used, so a laptop with a wrong clock cannot change the verdict. What remains is the skew between the
# speaker's node (which wrote renewTime) and the API server: a node whose clock is behind by more than the lease
# duration minus the renew interval (4 s with the defaults) looks expired while it renews, one ahead looks alive
# that much longer after it died. The running speakers, which judge by observation, have no such error.

STATE_ALIVE = "alive"  # held and renewed within its duration, by the API server's clock
STATE_EXPIRED = "expired"  # held, but not renewed within its duration
STATE_RELEASED = "released"  # no holder, or the 1-second duration of a release
STATE_UNREADABLE = "no-renew-time"  # held, with a renewTime missing or not RFC 3339: not judged alive
STATE_HELD = "held"  # held, and no server clock to judge by: alive, as `Liveness` judges a lease at first sight


@dataclass(frozen=True, slots=True)
class SnapshotVerdict:
    alive: bool
    state: str  # one of the STATE_* values
    # alive: seconds until it expires; expired: seconds since it expired (both on the server's clock); else None
    seconds: float | None


def judge_snapshot(
    leases: Mapping[str, LeaseRecord], renewed: Mapping[str, float], server_now: float | None
) -> dict[str, SnapshotVerdict]:
    """Each speaker's verdict (by node) for leases read once. `renewed`: each lease's renewTime as POSIX seconds,
    parsed by the caller (absent when missing or unreadable); `server_now`: the API server's clock when the leases
    were listed (POSIX seconds; None when the server gave no time: then every held lease counts as alive, see
    STATE_HELD)."""
    verdicts = {}
    for node, record in leases.items():
        if record.released:
            verdicts[node] = SnapshotVerdict(False, STATE_RELEASED, None)
        elif server_now is None:
            verdicts[node] = SnapshotVerdict(True, STATE_HELD, None)
        elif node not in renewed:
            verdicts[node] = SnapshotVerdict(False, STATE_UNREADABLE, None)
        else:
            assert record.duration_seconds is not None  # not released
            deadline = renewed[node] + record.duration_seconds
            if server_now < deadline:
                verdicts[node] = SnapshotVerdict(True, STATE_ALIVE, deadline - server_now)
            else:
                verdicts[node] = SnapshotVerdict(False, STATE_EXPIRED, server_now - deadline)
    return verdicts
