"""The simulated scheduler with project quotas, as KAI-Scheduler schedules: pure, no database.

Deserved quota first; preemptible work over quota, up to the limit, on idle capacity shared by
overQuotaWeight; reclaim by preemption; non-preemptible work never over quota; within a project,
priority then submission order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.cluster.simulation import ClusterShape, SimCache, SimInput, SimResult, Timing, simulate
from app.domain.quota import Quota, ResourceQuota
from tests.cluster import manifests as m

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
TIMING = Timing(schedule_seconds=1, start_seconds=2, run_seconds=60)
CLUSTER = ClusterShape(nodes=2, gpus_per_node=4)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def training(
    key: str,
    *,
    project: str = "team-a",
    gpus: int = 2,
    applied: float = 0,
    preemptibility: str | None = None,
    priority_class: str | None = None,
    run_seconds: int | None = None,
) -> SimInput:
    manifests = m.training(key, name=key, gpus=gpus)
    job = manifests[0]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels["runplane.io/project"] = project
    if preemptibility:
        job["metadata"]["labels"]["kai.scheduler/preemptibility"] = preemptibility
    if priority_class:
        job["spec"]["template"]["spec"]["priorityClassName"] = priority_class
    if run_seconds is not None:
        job["metadata"]["annotations"] = {"simulation.runplane.io/run-seconds": str(run_seconds)}
    return SimInput(key=key, manifests=manifests, applied_at=at(applied))


def gpu_quota(deserved: float, limit: float | None = None, weight: float = 1) -> Quota:
    return Quota(
        gpu=ResourceQuota(
            Decimal(str(deserved)),
            None if limit is None else Decimal(str(limit)),
            Decimal(str(weight)),
        )
    )


class Cluster:
    """Calls the simulation as the backend does: each result's pins passed back next time."""

    def __init__(self, quotas: dict[str, Quota], cluster: ClusterShape = CLUSTER) -> None:
        self.quotas = quotas
        self.cluster = cluster
        self.items: dict[str, SimInput] = {}
        self.results: dict[str, SimResult] = {}

    def add(self, *items: SimInput) -> None:
        for item in items:
            self.items[item.key] = item

    def run(self, second: float) -> dict[str, SimResult]:
        return self.keep(
            simulate(
                workloads=list(self.items.values()),
                cluster=self.cluster,
                now=at(second),
                timing=TIMING,
                quotas=self.quotas,
            )
        )

    def keep(self, results: list[SimResult]) -> dict[str, SimResult]:
        """Pass each result's pins back, as the backend stores them."""
        for r in results:
            self.items[r.key] = replace(
                self.items[r.key],
                scheduled_at=r.scheduled_at,
                preempted_at=r.preempted_at,
                preempted_by=r.preempted_by,
            )
        self.results = {r.key: r for r in results}
        return self.results

    def running(self) -> list[str]:
        return sorted(k for k, r in self.results.items() if _scheduled(r.pods))

    def waiting(self) -> list[str]:
        return sorted(
            k for k, r in self.results.items() if _live(r.pods) and not _scheduled(r.pods)
        )


def _live(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"]["phase"] not in ("Succeeded", "Failed")]


def _scheduled(pods: Sequence[dict[str, Any]]) -> bool:
    return bool(_live(pods)) and all(p["spec"].get("nodeName") for p in _live(pods))


def condition(result: SimResult, ctype: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = result.pods[0]["status"].get("conditions", [])
    (found,) = [c for c in conditions if c["type"] == ctype]
    return found


def test_deserved_quota_with_a_limit_holds_the_third_training_back_until_one_ends() -> None:
    c = Cluster({"team-a": gpu_quota(4, limit=4)})
    c.add(training("t1", run_seconds=20), training("t2", applied=1), training("t3", applied=2))
    c.run(10)
    assert c.running() == ["t1", "t2"]
    assert c.waiting() == ["t3"]  # 4 more GPUs are idle: the limit holds it back
    words = condition(c.results["t3"], "PodScheduled")["message"]
    assert words == (
        "queue team-a cannot allocate 2 GPUs: project team-a uses 4 of 4 deserved (limit 4)"
    )
    c.run(30)  # t1 ran 2 + 20 s: its GPUs are free
    assert c.running() == ["t2", "t3"]


def test_a_preemptible_workload_runs_over_quota_on_idle_capacity_up_to_its_limit() -> None:
    c = Cluster({"team-a": gpu_quota(2, limit=6)})
    c.add(*(training(f"t{i}", applied=i) for i in range(4)))
    c.run(10)
    assert c.running() == ["t0", "t1", "t2"]  # 6 GPUs: 2 deserved, 4 over quota
    assert c.waiting() == ["t3"]


def test_a_non_preemptible_workload_never_runs_over_quota() -> None:
    c = Cluster({"team-a": gpu_quota(2)})
    c.add(
        training("np1", preemptibility="non-preemptible"),
        training("np2", applied=1, preemptibility="non-preemptible"),
        training("p3", applied=2),
    )
    c.run(10)
    # np2 would go over the deserved 2; the preemptible p3 may borrow the idle GPUs.
    assert c.running() == ["np1", "p3"]
    assert c.waiting() == ["np2"]
    assert "non-preemptible" in condition(c.results["np2"], "PodScheduled")["message"]


def test_an_interactive_workload_is_non_preemptible_by_default() -> None:
    c = Cluster({"team-a": gpu_quota(1)})
    notebook = m.interactive("nb", gpus=2)
    c.add(SimInput(key="nb", manifests=notebook, applied_at=at(0)))
    c.run(10)
    assert c.waiting() == ["nb"]  # build priority (100): never over quota


def test_an_owner_reclaims_its_deserved_share_from_over_quota_work() -> None:
    c = Cluster({"team-a": gpu_quota(4), "team-b": gpu_quota(0)})
    c.add(*(training(f"b{i}", project="team-b", applied=i) for i in range(4)))
    c.run(10)
    assert c.running() == ["b0", "b1", "b2", "b3"]  # all 8 GPUs borrowed
    c.add(training("a1", applied=11))
    c.run(15)
    # The latest placed over-quota workload makes room; it waits again.
    assert c.running() == ["a1", "b0", "b1", "b2"]
    assert c.waiting() == ["b3"]
    mark = condition(c.results["b3"], "DisruptionTarget")
    assert mark["reason"] == "PreemptionByScheduler"
    assert mark["message"] == (
        "project team-a reclaimed 2 GPUs of its deserved quota for workload a1; "
        "project team-b was over its deserved 0"
    )
    # The next calls keep that decision: no flip-flop, the mark stays while it waits.
    c.run(16)
    c.run(30)
    assert c.waiting() == ["b3"]
    assert condition(c.results["b3"], "DisruptionTarget")["message"] == mark["message"]
    # A second in-quota workload reclaims again; a third would be over quota: nothing more.
    c.add(training("a2", applied=31), training("a3", applied=32))
    c.run(40)
    assert c.running() == ["a1", "a2", "b0", "b1"]
    assert c.waiting() == ["a3", "b2", "b3"]


def test_reclaim_never_takes_a_project_below_its_deserved_quota() -> None:
    c = Cluster({"team-a": gpu_quota(4), "team-b": gpu_quota(6)})
    c.add(*(training(f"b{i}", project="team-b", applied=i) for i in range(4)))
    c.run(10)
    c.add(training("a1", applied=11), training("a2", applied=12))
    c.run(20)
    # team-b is 2 over its 6: one of its workloads goes, not two.
    assert c.running() == ["a1", "b0", "b1", "b2"]
    assert c.waiting() == ["a2", "b3"]


def test_non_preemptible_work_is_never_a_victim() -> None:
    c = Cluster({"team-a": gpu_quota(4), "team-b": gpu_quota(0, weight=1)})
    c.add(*(training(f"b{i}", project="team-b", applied=i) for i in range(4)))
    c.quotas["team-b"] = gpu_quota(8)  # they ran within quota, non-preemptible or not
    c.run(10)
    c.quotas["team-b"] = gpu_quota(0)  # lowered: now all over quota, but preemptible
    c.items = {
        k: replace(v, manifests=_non_preemptible(v.manifests)) if k in ("b0", "b1") else v
        for k, v in c.items.items()
    }
    c.add(training("a1", applied=11), training("a2", applied=12))
    c.run(20)
    assert c.running() == ["a1", "a2", "b0", "b1"]


def _non_preemptible(manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    job = dict(manifests[0])
    meta = dict(job["metadata"])
    meta["labels"] = {**meta["labels"], "kai.scheduler/preemptibility": "non-preemptible"}
    return [{**job, "metadata": meta}]


def test_idle_capacity_is_shared_by_over_quota_weight() -> None:
    c = Cluster({"light": gpu_quota(0, weight=1), "heavy": gpu_quota(0, weight=3)})
    for i in range(8):
        c.add(training(f"l{i}", project="light", gpus=1, applied=0))
        c.add(training(f"h{i}", project="heavy", gpus=1, applied=0))
    c.run(10)
    running = c.running()
    assert len(running) == 8
    assert sum(k.startswith("h") for k in running) == 6  # 3:1
    assert sum(k.startswith("l") for k in running) == 2


def test_a_zero_weight_project_borrows_nothing() -> None:
    c = Cluster({"team-a": gpu_quota(2, weight=0)})
    c.add(training("t1"), training("t2", applied=1))
    c.run(10)
    assert c.running() == ["t1"]
    assert c.waiting() == ["t2"]


def test_within_a_project_priority_then_submission_order() -> None:
    c = Cluster({"team-a": gpu_quota(4, limit=4)})
    c.add(
        training("first", applied=0, run_seconds=10),
        training("second", applied=0, run_seconds=10),
        training("later-train", applied=1),
        training("later-urgent", applied=2, priority_class="interactive-preemptible"),
        training("last-train", applied=3),
    )
    c.run(5)
    assert c.running() == ["first", "second"]
    c.run(20)  # both ended: the higher priority first, then submission order
    assert c.running() == ["later-train", "later-urgent"]
    assert c.waiting() == ["last-train"]


def test_projects_without_quota_are_not_limited() -> None:
    c = Cluster({})
    c.add(*(training(f"t{i}", applied=i) for i in range(4)))
    c.run(10)
    assert c.running() == ["t0", "t1", "t2", "t3"]


def test_cached_calls_decide_as_uncached_ones() -> None:
    # (Who runs and who waits: a cache also knows since when each one waited, so a placement
    # can come later than an uncached call, which does not know, would put it.)
    quotas = {"team-a": gpu_quota(4), "team-b": gpu_quota(0)}
    items = [training(f"b{i}", project="team-b", applied=i) for i in range(4)]
    items += [training("a1", applied=11), training("a2", applied=13, run_seconds=5)]
    cache = SimCache()
    plain = Cluster(quotas)
    cached = Cluster(quotas)
    plain.add(*items)
    cached.add(*items)
    for second in range(0, 40, 3):
        plain.run(second)
        cached.keep(
            simulate(
                workloads=list(cached.items.values()),
                cluster=CLUSTER,
                now=at(second),
                timing=TIMING,
                quotas=quotas,
                cache=cache,
            )
        )
        assert (cached.running(), cached.waiting()) == (plain.running(), plain.waiting())
