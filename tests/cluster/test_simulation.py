"""The simulation engine, judged by what derive_status makes of its output.

Each lifecycle test plays one workload (or several sharing a cluster) second by second, as the
reconciler would see it, and checks the sequence of phases and the words that explain them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.cluster.simulation import (
    ClusterShape,
    SimCache,
    SimInput,
    SimResult,
    Timing,
    parse_nodes,
    simulate,
    simulate_one,
)
from app.domain.phases import DesiredPhase
from app.reconciler.status import WorkloadStatus, derive_status
from tests.cluster import manifests as m
from tests.cluster.schemas import validate

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
CLUSTER = parse_nodes("4x8")
TIMEOUT = timedelta(minutes=2)
INSUFFICIENT = "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
Manifests = list[dict[str, Any]]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status_of(
    result: SimResult,
    *,
    workload_type: str,
    now: datetime,
    previous: WorkloadStatus | None,
    desired: DesiredPhase = "Running",
) -> WorkloadStatus:
    return derive_status(
        workload_type=workload_type,
        desired_phase=desired,
        objects=result.objects,
        pods=result.pods,
        applied=True,
        now=now,
        pending_timeout=TIMEOUT,
        previous=previous,
    )


def lifecycle(
    workload_type: str, manifests: Manifests, *, until: int = 600
) -> list[WorkloadStatus]:
    """Every status change of one workload alone on the cluster, polled each second."""
    creating = derive_status(
        workload_type=workload_type,
        desired_phase="Running",
        objects=[],
        pods=[],
        applied=False,
        now=at(-1),
        pending_timeout=TIMEOUT,
    )
    seen, previous = [creating], creating
    for second in range(until):
        item = SimInput(key="w", manifests=manifests, applied_at=T0)
        result = simulate_one(workload=item, cluster=CLUSTER, now=at(second))
        status = status_of(result, workload_type=workload_type, now=at(second), previous=previous)
        if (status.phase, status.message) != (previous.phase, previous.message):
            seen.append(status)
        previous = status
    return seen


def phases(statuses: Sequence[WorkloadStatus]) -> list[str]:
    out: list[str] = []
    for status in statuses:
        if not out or out[-1] != status.phase:
            out.append(status.phase)
    return out


def fate(outcome: str, run_seconds: int = 30) -> dict[str, str]:
    """The annotations that decide how the simulated workload ends."""
    return {m.OUTCOME: outcome, m.RUN_SECONDS: str(run_seconds)}


START = ["Creating", "Pending", "Initializing"]
Builder = Callable[[dict[str, str]], Manifests]
BUILDERS: dict[str, tuple[str, Builder]] = {
    "training": ("training", lambda a: m.training(annotations=a)),
    "training-waves": (
        "training",
        lambda a: m.training(parallelism=2, completions=5, annotations=a),
    ),
    "interactive": ("interactive", lambda a: m.interactive(annotations=a)),
    "inference": ("inference", lambda a: m.inference(replicas=2, max_replicas=4, annotations=a)),
    # As Runplane renders them: replicas restart in place (OnFailure), backoffLimit 6.
    "pytorchjob": (
        "distributed",
        lambda a: m.kubeflow("PyTorchJob", backoff_limit=6, annotations=a),
    ),
    "tfjob": ("distributed", lambda a: m.kubeflow("TFJob", backoff_limit=6, annotations=a)),
    # Without a backoffLimit the training operator never gives up.
    "pytorchjob-no-limit": ("distributed", lambda a: m.kubeflow("PyTorchJob", annotations=a)),
    # The operators' default restartPolicy: TF's is Never (PyTorch's OnFailure).
    "tfjob-never": (
        "distributed",
        lambda a: m.kubeflow("TFJob", backoff_limit=6, restart_policy=None, annotations=a),
    ),
    "mpijob": ("distributed", lambda a: m.kubeflow("MPIJob", backoff_limit=3, annotations=a)),
    # The MPI launcher is a Job: its limit defaults to 6.
    "mpijob-no-limit": ("distributed", lambda a: m.kubeflow("MPIJob", annotations=a)),
    "native-pytorch": ("distributed", lambda a: m.native_pytorch(annotations=a)),
}


GAVE_UP = "Job dist has failed because it has reached the specified backoff limit"


@pytest.mark.parametrize(
    ("builder", "outcome", "expected", "last_words"),
    [
        ("training", "succeed", [*START, "Running", "Completed"], "CompletionsReached"),
        ("training-waves", "succeed", [*START, "Running", "Completed"], "CompletionsReached"),
        ("training", "fail", [*START, "Running", "Failed"], "BackoffLimitExceeded"),
        ("training", "crash-loop", [*START, "Running", "Degraded", "Failed"], "BackoffLimit"),
        ("training", "image-pull-error", [*START, "Failed"], "ImagePullBackOff"),
        ("interactive", "succeed", [*START, "Running"], "1/1 pods ready"),
        ("interactive", "fail", [*START, "Running", "Degraded"], "CrashLoopBackOff"),
        ("interactive", "crash-loop", [*START, "Running", "Degraded"], "restarted 6 times"),
        ("interactive", "image-pull-error", [*START, "Failed"], "ImagePullBackOff"),
        ("inference", "succeed", [*START, "Running"], "2/2 pods ready"),
        ("inference", "crash-loop", [*START, "Running", "Degraded"], "CrashLoopBackOff"),
        ("inference", "image-pull-error", [*START, "Failed"], "ImagePullBackOff"),
        # The operators' own words (training-operator v1.9, mpi-operator v0.8): the PyTorch
        # controller names a job with a Master without its namespace.
        (
            "pytorchjob",
            "succeed",
            [*START, "Running", "Completed"],
            "PyTorchJobSucceeded: PyTorchJob dist is successfully completed.",
        ),
        # Replicas that restart in place crash-loop until their restarts, all pods' together,
        # reach the backoffLimit; the operator then fails the job and deletes its pods.
        (
            "pytorchjob",
            "fail",
            [*START, "Running", "Degraded", "Failed"],
            f"PyTorchJobFailed: {GAVE_UP}",
        ),
        ("pytorchjob", "crash-loop", [*START, "Running", "Degraded", "Failed"], GAVE_UP),
        ("pytorchjob-no-limit", "fail", [*START, "Running", "Degraded"], "CrashLoopBackOff"),
        ("pytorchjob", "image-pull-error", [*START, "Failed"], "ImagePullBackOff"),
        (
            "tfjob",
            "succeed",
            [*START, "Running", "Completed"],
            "TFJobSucceeded: TFJob runplane-team-a/dist successfully completed.",
        ),
        ("tfjob", "fail", [*START, "Running", "Degraded", "Failed"], f"TFJobFailed: {GAVE_UP}"),
        (
            "tfjob-never",
            "fail",
            [*START, "Running", "Failed"],
            "TFJobFailed: TFJob runplane-team-a/dist has failed because 1 Chief replica(s) failed.",
        ),
        (
            "mpijob",
            "succeed",
            [*START, "Running", "Completed"],
            "MPIJobSucceeded: MPIJob runplane-team-a/dist successfully completed.",
        ),
        # The launcher restarts in place (OnFailure) until its Job gives up; the workers (Never)
        # stay down, and stay.
        (
            "mpijob",
            "fail",
            [*START, "Running", "Degraded", "Failed"],
            "BackoffLimitExceeded: Job has reached the specified backoff limit; pod dist-worker-0 "
            "failed: container main exited with code 1 (Error)",
        ),
        ("mpijob", "crash-loop", [*START, "Running", "Degraded", "Failed"], "BackoffLimitExceeded"),
        (
            "mpijob-no-limit",
            "crash-loop",
            [*START, "Running", "Degraded", "Failed"],
            "backoff limit",
        ),
        ("native-pytorch", "succeed", [*START, "Running", "Completed"], "CompletionsReached"),
        ("native-pytorch", "fail", [*START, "Running", "Failed"], "BackoffLimitExceeded"),
        ("native-pytorch", "image-pull-error", [*START, "Failed"], "ImagePullBackOff"),
    ],
)
def test_lifecycle(builder: str, outcome: str, expected: list[str], last_words: str) -> None:
    workload_type, build = BUILDERS[builder]
    seen = lifecycle(workload_type, build(fate(outcome)))
    assert phases(seen) == expected, [(s.phase, s.message) for s in seen]
    assert last_words in seen[-1].message
    if outcome == "image-pull-error":
        # The stuck pod shows at once, long before the timeout turns the workload Failed.
        pulling = [s.message for s in seen if s.phase == "Initializing"]
        assert any("ErrImagePull" in text for text in pulling)
        assert any("ImagePullBackOff: container main in pod" in text for text in pulling)


def test_pods_and_phases_follow_the_timeline() -> None:
    timing = Timing(schedule_seconds=2, start_seconds=20, run_seconds=100)
    item = SimInput(key="w", manifests=m.training(), applied_at=T0)
    expected = [(1, "Pending"), (2, "Initializing"), (21, "Initializing"), (22, "Running"),
                (121, "Running"), (122, "Completed")]  # fmt: skip
    for second, phase in expected:
        result = simulate(workloads=[item], cluster=CLUSTER, now=at(second), timing=timing)[0]
        status = status_of(result, workload_type="training", now=at(second), previous=None)
        assert status.phase == phase, (second, status.message)


@pytest.mark.parametrize(("workers", "restarts"), [(0, 5), (2, 1)])
def test_the_training_operator_counts_the_restarts_of_all_the_pods_together(
    workers: int, restarts: int
) -> None:
    """backoffLimit 6: one pod restarts five times before its sixth exit fails the job; three
    reach six together after their second exits."""
    seen = lifecycle(
        "distributed",
        m.kubeflow("PyTorchJob", workers=workers, backoff_limit=6, annotations=fate("crash-loop")),
        until=2000,
    )
    degraded = [s.message for s in seen if s.phase == "Degraded"]
    times = "1 time;" if restarts == 1 else f"{restarts} times;"
    assert times in degraded[-1], degraded
    assert seen[-1].phase == "Failed", seen[-1].message


def test_run_seconds_annotation_wins_over_the_default() -> None:
    item = SimInput(key="w", manifests=m.training(annotations={m.RUN_SECONDS: "5"}), applied_at=T0)
    result = simulate_one(workload=item, cluster=CLUSTER, now=at(1 + 10 + 5))
    assert result.objects[0]["status"]["succeeded"] == 1


@pytest.mark.parametrize(
    ("workload_type", "build", "words"),
    [
        ("training", lambda a: m.training(annotations=a), "exited with code 3 (Error)"),
        ("interactive", lambda a: m.interactive(annotations=a), "last exit code 3 (Error)"),
    ],
)
def test_exit_code_annotation_is_what_the_container_exits_with(
    workload_type: str, build: Builder, words: str
) -> None:
    seen = lifecycle(workload_type, build({**fate("fail", 5), m.EXIT_CODE: "3"}))
    assert any(words in s.message for s in seen), [s.message for s in seen]
    assert not any("code 1 " in s.message for s in seen)


@pytest.mark.parametrize(
    ("workload_type", "manifests"),
    [
        ("training", m.training(suspend=True)),
        ("interactive", m.interactive(stopped=True)),
        ("inference", m.inference(replicas=2, max_replicas=3, stopped=True)),
        ("distributed", m.kubeflow("PyTorchJob", suspend=True)),
        ("distributed", m.kubeflow("MPIJob", suspend=True)),
        ("distributed", m.native_pytorch(suspend=True)),
    ],
)
def test_stopped_manifests_are_stopped(workload_type: str, manifests: Manifests) -> None:
    item = SimInput(key="w", manifests=manifests, applied_at=T0)
    for second in (0, 30, 3600):
        result = simulate_one(workload=item, cluster=CLUSTER, now=at(second))
        assert result.pods == []
        status = status_of(
            result, workload_type=workload_type, now=at(second), previous=None, desired="Stopped"
        )
        assert status.phase == "Stopped"
        for obj in result.objects:
            validate(obj)


@pytest.mark.parametrize(
    ("workload_type", "build"),
    [
        ("training", lambda stopped: m.training(suspend=stopped,
                                                 annotations={m.RUN_SECONDS: "900"})),
        ("interactive", lambda stopped: m.interactive(stopped=stopped)),
        ("inference", lambda stopped: m.inference(replicas=2, max_replicas=3, stopped=stopped)),
        ("distributed", lambda stopped: m.kubeflow("TFJob", suspend=stopped,
                                                   annotations={m.RUN_SECONDS: "900"})),
    ],
)  # fmt: skip
def test_stop_and_resume(workload_type: str, build: Callable[[bool], Manifests]) -> None:
    seen: list[str] = []
    previous = None
    for second in range(0, 200):
        desired: DesiredPhase = "Stopped" if 60 <= second < 120 else "Running"
        if second < 62:  # the reconciler applies the stop two seconds after it was asked for
            item = SimInput(key="w", manifests=build(False), applied_at=T0)
        elif second < 120:
            item = SimInput(key="w", manifests=build(True), applied_at=T0, stopped_at=at(62))
        else:
            item = SimInput(
                key="w", manifests=build(False), applied_at=T0, stopped_at=at(62),
                resumed_at=at(120),
            )  # fmt: skip
        result = simulate_one(workload=item, cluster=CLUSTER, now=at(second))
        previous = status_of(
            result, workload_type=workload_type, now=at(second), previous=previous,
            desired=desired,
        )  # fmt: skip
        if not seen or seen[-1] != previous.phase:
            seen.append(previous.phase)
    assert seen == [
        "Pending", "Initializing", "Running", "Stopping", "Stopped", "Resuming", "Running",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (
            "PyTorchJob",
            {
                "Created": "PyTorchJob dist is created.",
                "Running": "PyTorchJob dist is running.",
                "Suspended": "PyTorchJob dist is suspended.",
                "Not running": "PyTorchJob dist is suspended.",
                "Resumed": "PyTorchJob dist is resumed.",
            },
        ),
        (
            "TFJob",
            {
                "Created": "TFJob dist is created.",
                "Running": "TFJob runplane-team-a/dist is running.",
                "Suspended": "TFJob dist is suspended.",
                "Not running": "TFJob dist is suspended.",
                "Resumed": "TFJob dist is resumed.",
            },
        ),
        (
            "MPIJob",
            {
                "Created": "MPIJob runplane-team-a/dist is created.",
                "Running": "MPIJob runplane-team-a/dist is running.",
                "Suspended": "MPIJob suspended",
                "Not running": "MPIJob runplane-team-a/dist is suspended.",
                "Resumed": "MPIJob resumed",
            },
        ),
    ],
)
def test_kubeflow_conditions_say_what_the_operators_say(kind: str, words: dict[str, str]) -> None:
    def conditions(item: SimInput, second: int) -> dict[str, str]:
        (obj,) = simulate_one(workload=item, cluster=CLUSTER, now=at(second)).objects
        return {c["type"]: c["message"] for c in obj["status"]["conditions"]}

    running = conditions(SimInput(key="w", manifests=m.kubeflow(kind), applied_at=T0), 30)
    assert (running["Created"], running["Running"]) == (words["Created"], words["Running"])
    stopped = SimInput(
        key="w", manifests=m.kubeflow(kind, suspend=True), applied_at=T0, stopped_at=at(60)
    )
    suspended = conditions(stopped, 90)
    assert suspended["Suspended"] == words["Suspended"]
    assert suspended["Running"] == words["Not running"]
    resumed = SimInput(
        key="w", manifests=m.kubeflow(kind), applied_at=T0, stopped_at=at(60), resumed_at=at(120)
    )
    assert conditions(resumed, 150)["Suspended"] == words["Resumed"]


def test_request_no_node_can_hold_stays_unschedulable() -> None:
    item = SimInput(key="w", manifests=m.training(gpus=16), applied_at=T0)
    for second in (5, 600, 86400):
        result = simulate_one(workload=item, cluster=CLUSTER, now=at(second))
        status = status_of(result, workload_type="training", now=at(second), previous=None)
        assert (status.phase, status.reason) == ("Pending", "Unschedulable")
        assert status.message == INSUFFICIENT
    (pod,) = result.pods
    assert pod["status"]["conditions"] == [
        {
            "lastProbeTime": None,
            "lastTransitionTime": "2025-03-04T10:00:01Z",
            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            "reason": "Unschedulable",
            "status": "False",
            "type": "PodScheduled",
        }
    ]
    assert "nodeName" not in pod["spec"]


def test_gang_larger_than_the_cluster_stays_pending() -> None:
    # 1 master + 4 workers of 8 GPUs each on 4 nodes of 8: each pod fits a node, the five don't.
    item = SimInput(key="w", manifests=m.kubeflow("PyTorchJob", workers=4, gpus=8), applied_at=T0)
    result = simulate_one(workload=item, cluster=CLUSTER, now=at(3600))
    status = status_of(result, workload_type="distributed", now=at(3600), previous=None)
    assert (status.phase, status.pods.pending) == ("Pending", 5)
    assert status.message.startswith(INSUFFICIENT)


def test_gang_that_fills_the_cluster_runs_one_pod_per_node() -> None:
    item = SimInput(key="w", manifests=m.kubeflow("PyTorchJob", workers=3, gpus=8), applied_at=T0)
    result = simulate_one(workload=item, cluster=CLUSTER, now=at(20))
    assert status_of(result, workload_type="distributed", now=at(20), previous=None).phase == (
        "Running"
    )
    assert sorted(p["spec"]["nodeName"] for p in result.pods) == [
        "sim-node-0", "sim-node-1", "sim-node-2", "sim-node-3",
    ]  # fmt: skip


def eight_gpu_training(index: int, *, run_seconds: int = 30) -> SimInput:
    return SimInput(
        key=f"w{index}",
        manifests=m.training(f"w{index}", name=f"train-{index}", gpus=8,
                             annotations={m.RUN_SECONDS: str(run_seconds)}),
        applied_at=at(index),
    )  # fmt: skip


def phases_at(items: Sequence[SimInput], second: float, **kw: Any) -> dict[str, WorkloadStatus]:
    results = simulate(workloads=items, cluster=CLUSTER, now=at(second), **kw)
    return {
        r.key: status_of(r, workload_type="training", now=at(second), previous=None)
        for r in results
    }


def test_a_full_cluster_keeps_later_workloads_pending_first_come_first_served() -> None:
    items = [eight_gpu_training(i) for i in range(6)]
    shuffled = [items[3], items[5], items[0], items[4], items[2], items[1]]

    early = phases_at(shuffled, 20)
    assert {k: s.phase for k, s in early.items()} == {
        "w0": "Running", "w1": "Running", "w2": "Running", "w3": "Running",
        "w4": "Pending", "w5": "Pending",
    }  # fmt: skip
    assert early["w4"].message == INSUFFICIENT

    # w0 was placed at 1 s and finishes at 1 + 10 + 30: w4, the oldest waiting, takes its place
    # (and w5 takes w1's a second later).
    later = phases_at(shuffled, 41)
    assert later["w0"].phase == "Completed"
    assert (later["w4"].phase, later["w5"].phase) == ("Initializing", "Pending")
    assert later["w4"].pods.pending == 1
    assert phases_at(shuffled, 42)["w5"].phase == "Initializing"


def test_a_smaller_request_passes_one_that_does_not_fit() -> None:
    cluster = ClusterShape(nodes=1, gpus_per_node=8)
    notebook = SimInput(key="a", manifests=m.interactive("a", gpus=6), applied_at=at(0))
    big = SimInput(key="b", manifests=m.training("b", name="big", gpus=8), applied_at=at(1))
    small = SimInput(key="c", manifests=m.training("c", name="small", gpus=2), applied_at=at(2))
    results = simulate(workloads=[notebook, big, small], cluster=cluster, now=at(30))
    pods = {r.key: r.pods[0] for r in results}
    assert "nodeName" in pods["a"]["spec"]
    assert "nodeName" in pods["c"]["spec"]
    assert pods["b"]["status"]["conditions"][0]["message"] == (
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    )


def test_pinned_placement_survives_the_deletion_of_what_it_queued_behind() -> None:
    cluster = ClusterShape(nodes=1, gpus_per_node=8)
    first, second = eight_gpu_training(0, run_seconds=100), eight_gpu_training(1, run_seconds=100)
    before = simulate(workloads=[first, second], cluster=cluster, now=at(150))
    assert before[1].scheduled_at == at(111)  # when the first one finished

    # Deleted, the first one leaves no trace: replayed alone, the second would have started at
    # once and be finished by now. Its pinned placement keeps it running.
    unpinned = simulate(workloads=[second], cluster=cluster, now=at(150))[0]
    assert unpinned.objects[0]["status"].get("succeeded") == 1
    pinned = SimInput(
        key=second.key, manifests=second.manifests, applied_at=second.applied_at,
        scheduled_at=before[1].scheduled_at,
    )  # fmt: skip
    result = simulate(workloads=[pinned], cluster=cluster, now=at(150))[0]
    assert result.objects[0]["status"]["active"] == 1
    assert result.scheduled_at == at(111)


def test_a_pin_from_before_a_stop_is_ignored() -> None:
    resumed = SimInput(
        key="w", manifests=m.training(), applied_at=at(0), resumed_at=at(100),
        scheduled_at=at(1),
    )  # fmt: skip
    result = simulate_one(workload=resumed, cluster=CLUSTER, now=at(105))
    assert result.scheduled_at == at(101)


def test_a_stopped_workload_held_its_gpus_until_the_stop() -> None:
    cluster = ClusterShape(nodes=1, gpus_per_node=8)
    notebook = SimInput(
        key="a", manifests=m.interactive("a", gpus=8, stopped=True), applied_at=at(0),
        stopped_at=at(100),
    )  # fmt: skip
    queued = eight_gpu_training(1)
    result = simulate(workloads=[notebook, queued], cluster=cluster, now=at(120))[1]
    assert result.scheduled_at == at(100)  # not at 2 s, as if the notebook had never run


def test_the_cache_remembers_who_was_waiting() -> None:
    cluster = ClusterShape(nodes=1, gpus_per_node=8)
    notebook = SimInput(key="a", manifests=m.interactive("a", gpus=8), applied_at=at(0))
    queued = eight_gpu_training(1)
    cache = SimCache()
    simulate(workloads=[notebook, queued], cluster=cluster, now=at(100), cache=cache)
    # The notebook is deleted; the training was still waiting at 100 s, so that is the earliest
    # it can have started (not 2 s, as a replay without the notebook would say).
    result = simulate(workloads=[queued], cluster=cluster, now=at(102), cache=cache)[0]
    assert result.scheduled_at == at(100)


def test_deterministic_json_and_inputs_untouched() -> None:
    items = [
        SimInput(key=f"w{i}", manifests=build(fate(outcome)), applied_at=at(i))
        for i, (_, build) in enumerate(BUILDERS.values())
        for outcome in ("succeed", "crash-loop")
    ]
    before = copy.deepcopy(items)
    first = simulate(workloads=items, cluster=CLUSTER, now=at(45))
    second = simulate(workloads=items, cluster=CLUSTER, now=at(45))
    assert first == second
    assert items == before
    json.dumps([[r.objects, r.pods] for r in first])


MIXED = [
    SimInput(key=f"{name}-{outcome}", manifests=build(fate(outcome, 25)), applied_at=at(i))
    for i, (name, (_, build)) in enumerate(BUILDERS.items())
    for outcome in ("succeed", "fail", "crash-loop", "image-pull-error")
] + [
    SimInput(key="stopped", manifests=m.interactive("s", stopped=True), applied_at=at(0),
             stopped_at=at(40)),
    SimInput(key="huge", manifests=m.training("h", gpus=64), applied_at=at(0)),
]  # fmt: skip


@pytest.mark.parametrize("second", [0, 1, 2, 11, 12, 30, 36, 37, 45, 60, 75, 100, 300, 900])
def test_output_is_what_an_api_server_would_hold(second: int) -> None:
    for result in simulate(workloads=MIXED, cluster=parse_nodes("8x8"), now=at(second)):
        for obj in [*result.objects, *result.pods]:
            validate(obj)


def test_cached_calls_return_what_uncached_ones_do() -> None:
    cluster = parse_nodes("8x8")
    cache = SimCache()
    reused, last = 0, dict[str, SimResult]()
    for second in [*range(0, 120), *range(120, 1200, 7)]:
        cached = simulate(workloads=MIXED, cluster=cluster, now=at(second), cache=cache)
        fresh = simulate(workloads=MIXED, cluster=cluster, now=at(second))
        assert cached == fresh, second
        reused += sum(r is last.get(r.key) for r in cached)
        last = {r.key: r for r in cached}
    assert reused > len(MIXED) * 100  # most calls reuse most results


def test_pod_shape() -> None:
    item = SimInput(key="w", manifests=m.training(), applied_at=T0)
    (pod,) = simulate_one(workload=item, cluster=CLUSTER, now=at(15)).pods
    meta, status = pod["metadata"], pod["status"]
    template_labels = m.training()[0]["spec"]["template"]["metadata"]["labels"]
    assert template_labels.items() <= meta["labels"].items()
    assert meta["labels"]["job-name"] == "train"
    assert meta["name"].startswith("train-")
    assert len(meta["name"]) == len("train-") + 5
    assert meta["creationTimestamp"] == "2025-03-04T10:00:00Z"
    assert meta["ownerReferences"][0]["kind"] == "Job"
    assert pod["spec"]["nodeName"].startswith("sim-node-")
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled",
    ]  # fmt: skip
    assert status["containerStatuses"][0]["state"] == {
        "running": {"startedAt": "2025-03-04T10:00:11Z"}
    }


def test_object_status_shapes() -> None:
    items = [
        SimInput(key="a", manifests=m.inference("a", replicas=2, max_replicas=4), applied_at=T0),
        SimInput(key="b", manifests=m.kubeflow("PyTorchJob", "b", workers=2), applied_at=T0),
        SimInput(key="c", manifests=m.interactive("c"), applied_at=T0),
    ]
    inference, pytorch, notebook = simulate(workloads=items, cluster=CLUSTER, now=at(15))
    deployment, service, hpa = inference.objects
    assert deployment["status"]["readyReplicas"] == 2
    assert {c["type"]: c["status"] for c in deployment["status"]["conditions"]} == {
        "Available": "True",
        "Progressing": "True",
    }
    assert service["spec"]["clusterIP"].startswith("10.96.")
    assert hpa["status"]["currentReplicas"] == 2
    job_status = pytorch.objects[0]["status"]
    assert [c["type"] for c in job_status["conditions"]] == ["Created", "Running"]
    assert job_status["replicaStatuses"]["Worker"]["active"] == 2
    assert notebook.objects[0]["status"]["readyReplicas"] == 1
    assert notebook.objects[1]["status"] == {"loadBalancer": {}}


@pytest.mark.parametrize(
    ("text", "shape"),
    [("4x8", ClusterShape(4, 8)), (" 16 X 0 ", ClusterShape(16, 0)), ("1x1", ClusterShape(1, 1))],
)
def test_parse_nodes(text: str, shape: ClusterShape) -> None:
    assert parse_nodes(text) == shape


@pytest.mark.parametrize("text", ["", "4", "4x", "x8", "0x8", "4x8x2", "-1x8", "4*8", "4x2000"])
def test_parse_nodes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="NODESxGPUS|nodes"):
        parse_nodes(text)
