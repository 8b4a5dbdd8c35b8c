"""The admission rules: priority, preemptibility and the verdict with its figures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.domain.quota import UNLIMITED, ResourceQuota
from app.domain.scheduling import Capacity, gpus, ordinal, preemptible, priority, verdict

D = Decimal
ROOMY = Capacity(total=D(32), largest_node=D(8), free=D(20), largest_free=D(8))


def quota(deserved: float, limit: float | None = None, weight: float = 1) -> ResourceQuota:
    return ResourceQuota(D(str(deserved)), None if limit is None else D(str(limit)), D(weight))


@pytest.mark.parametrize(
    ("priority_class", "workload_type", "value", "may_be_preempted"),
    [
        (None, "training", 50, True),
        (None, "distributed", 50, True),
        (None, "interactive", 100, False),
        (None, "inference", 125, False),
        ("interactive-preemptible", "interactive", 75, True),
        ("build", "training", 100, False),
        ("someone-elses", "training", 0, True),
    ],
)
def test_priority_and_preemptibility_follow_kai(
    priority_class: str | None, workload_type: str, value: int, may_be_preempted: bool
) -> None:
    assert priority(priority_class, workload_type) == value
    assert preemptible(None, value) is may_be_preempted
    assert preemptible("non-preemptible", 10) is False
    assert preemptible("preemptible", 125) is True


def test_words() -> None:
    assert [gpus(D(1)), gpus(D("0.5")), gpus(D(2)), gpus(D(0))] == [
        "1 GPU", "0.5 GPU", "2 GPUs", "0 GPUs",
    ]  # fmt: skip
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "21st", "22nd",
    ]  # fmt: skip


def test_within_quota_with_room_starts_now() -> None:
    found = verdict(
        project="team-a", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4, 4), used=D(2), capacity=ROOMY,
    )  # fmt: skip
    assert (found.outcome, found.message) == (
        "StartsNow",
        "Starts now: needs 2 GPUs; project team-a uses 2 of 4 deserved (limit 4)",
    )


def test_at_its_limit_it_waits_for_quota_with_its_place_in_the_queue() -> None:
    found = verdict(
        project="team-a", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4, 4), used=D(4), capacity=ROOMY, position=2,
    )  # fmt: skip
    assert (found.outcome, found.reason, found.message) == (
        "WaitsForQuota",
        "QuotaExceeded",
        "Waiting for quota: needs 2 GPUs; project team-a uses 4 of 4 deserved (limit 4); "
        "2nd in the project's queue",
    )


def test_over_quota_a_preemptible_one_borrows_a_non_preemptible_one_waits() -> None:
    borrowing = verdict(
        project="team-a", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4), used=D(4), capacity=ROOMY,
    )  # fmt: skip
    assert borrowing.outcome == "StartsNow"
    assert "over quota" in borrowing.message
    fixed = verdict(
        project="team-a", request=D(2), largest_pod=D(2), is_preemptible=False,
        quota=quota(4), used=D(4), capacity=ROOMY,
    )  # fmt: skip
    assert fixed.outcome == "WaitsForQuota"
    assert fixed.message.endswith("and a non-preemptible workload never runs over quota")
    stingy = verdict(
        project="team-a", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4, weight=0), used=D(4), capacity=ROOMY,
    )  # fmt: skip
    assert stingy.outcome == "WaitsForQuota"


def test_beyond_its_limit_or_the_cluster_it_cannot_start() -> None:
    assert verdict(
        project="p", request=D(6), largest_pod=D(2), is_preemptible=True,
        quota=quota(2, 4), used=D(0), capacity=ROOMY,
    ).message == "Cannot start: needs 6 GPUs, more than project p's limit of 4"  # fmt: skip
    assert verdict(
        project="p", request=D(16), largest_pod=D(16), is_preemptible=True,
        quota=UNLIMITED, used=D(0), capacity=ROOMY,
    ).message == (
        "Cannot start: needs 16 GPUs; the cluster has 32 GPUs in all, and no node has room for "
        "a pod"
    )  # fmt: skip


def test_short_of_capacity_it_waits_unless_it_reclaims_what_others_borrowed() -> None:
    full = Capacity(total=D(8), largest_node=D(4), free=D(0), largest_free=D(0))
    waits = verdict(
        project="p", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4), used=D(0), capacity=full,
    )  # fmt: skip
    assert (waits.outcome, waits.reason) == ("WaitsForCapacity", "InsufficientCapacity")
    borrowed = Capacity(
        total=D(8), largest_node=D(4), free=D(0), largest_free=D(0), reclaimable=D(4)
    )
    reclaims = verdict(
        project="p", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4), used=D(0), capacity=borrowed,
    )  # fmt: skip
    assert reclaims.outcome == "StartsNow"
    # Over its own deserved quota it takes back nothing.
    over = verdict(
        project="p", request=D(2), largest_pod=D(2), is_preemptible=True,
        quota=quota(4), used=D(4), capacity=borrowed,
    )  # fmt: skip
    assert over.outcome == "WaitsForCapacity"
