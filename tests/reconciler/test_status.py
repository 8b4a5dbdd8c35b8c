"""derive_status against objects as a real API server returns them, and the status helpers.

The cases live in ``fixtures/<kind>.yaml``: one file per workload object kind, one case per phase
or reason, each with the objects and pods ``kubectl get -o yaml`` would show and the phase, reason
and whole message a user would read; and in
``fixtures/<kind>_captured.yaml``, objects the real operators and Job controller wrote in the test
cluster (``tests/kube``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from app.domain.phases import PHASES, DesiredPhase
from app.reconciler.status import (
    Condition,
    PodCounts,
    WorkloadStatus,
    derive_status,
    parse_time,
    status_changed,
)
from tests.cluster.schemas import validate

FIXTURES = Path(__file__).parent / "fixtures"
DEFAULT_TIMEOUT = timedelta(minutes=5)


def load_cases() -> Iterator[dict[str, Any]]:
    for path in sorted(FIXTURES.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        for case in document["cases"]:
            yield {**document.get("defaults", {}), **case, "file": path.stem}


CASES = list(load_cases())


def derive(case: dict[str, Any], **overrides: Any) -> WorkloadStatus:
    previous = None
    if "previous" in case:
        previous = WorkloadStatus(
            phase=case["previous"]["phase"], message=case["previous"].get("message", "")
        )
    arguments: dict[str, Any] = {
        "workload_type": case["workloadType"],
        "desired_phase": cast(DesiredPhase, case.get("desiredPhase", "Running")),
        "objects": case["objects"],
        "pods": case["pods"],
        "applied": case.get("applied", True),
        "now": parse_time(case["now"]),
        "pending_timeout": DEFAULT_TIMEOUT,
        "previous": previous,
        "cluster_error": case.get("clusterError"),
    }
    arguments.update(overrides)
    return derive_status(**arguments)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['file']}:{c['id']}" for c in CASES])
def test_phase_from_observed_objects(case: dict[str, Any]) -> None:
    expect = case["expect"]
    status = derive(case)

    assert (status.phase, status.reason, status.message) == (
        expect["phase"],
        expect["reason"],
        expect["message"],
    )
    if "pods" in expect:
        assert status.pods.to_dict() == expect["pods"]
    conditions = {c.type: c for c in status.conditions}
    for ctype, (cstatus, reason, *when) in expect.get("conditions", {}).items():
        assert ctype in conditions, [c.type for c in status.conditions]
        assert (conditions[ctype].status, conditions[ctype].reason) == (cstatus, reason)
        if when:
            assert conditions[ctype].last_transition_time == parse_time(when[0])


@pytest.mark.parametrize("case", CASES, ids=[f"{c['file']}:{c['id']}" for c in CASES])
def test_fixtures_are_what_an_api_server_holds(case: dict[str, Any]) -> None:
    for obj in [*case["objects"], *case["pods"]]:
        validate(obj)


def test_every_phase_has_a_fixture() -> None:
    assert {c["expect"]["phase"] for c in CASES} == set(PHASES)


@pytest.mark.parametrize(
    ("kind", "phases"),
    [
        ("job", {"Creating", "Pending", "Initializing", "Running", "Degraded", "Completed",
                 "Failed", "Stopping", "Stopped", "Resuming", "Deleting", "Deleted", "Unknown"}),
        ("indexed_job", {"Pending", "Initializing", "Running", "Degraded", "Completed", "Failed"}),
        ("statefulset", {"Creating", "Pending", "Initializing", "Running", "Degraded",
                         "Stopping", "Stopped", "Resuming", "Failed", "Unknown"}),
        ("deployment", {"Pending", "Initializing", "Running", "Degraded", "Failed", "Stopped",
                        "Resuming", "Deleting"}),
        ("pytorchjob", {"Pending", "Initializing", "Running", "Degraded", "Completed", "Failed",
                        "Stopping"}),
        ("tfjob", {"Running", "Degraded", "Completed", "Failed", "Stopped"}),
        ("mpijob", {"Pending", "Running", "Completed", "Failed", "Stopped"}),
        # Captured from the real operators and Job controller (tests/kube).
        ("pytorchjob_captured", {"Pending", "Running", "Degraded", "Completed", "Failed",
                                 "Stopped", "Resuming"}),
        ("tfjob_captured", {"Running", "Degraded", "Completed", "Failed", "Stopped"}),
        ("mpijob_captured", {"Pending", "Running", "Degraded", "Completed", "Failed", "Stopped",
                             "Resuming"}),
        ("indexed_job_captured", {"Stopped", "Resuming"}),
    ],
)  # fmt: skip
def test_each_kind_covers_its_lifecycle(kind: str, phases: set[str]) -> None:
    assert phases <= {c["expect"]["phase"] for c in CASES if c["file"] == kind}


def case(case_id: str) -> dict[str, Any]:
    return next(c for c in CASES if c["id"] == case_id)


def test_does_not_mutate_its_inputs() -> None:
    running = case("deploy-running-at-autoscaler-minimum")
    before = copy.deepcopy(running)
    derive(running)
    assert running == before


@pytest.mark.parametrize(
    ("after", "phase"),
    [(timedelta(minutes=5), "Initializing"), (timedelta(minutes=5, seconds=1), "Failed")],
)
def test_stuck_pod_fails_only_after_the_pending_timeout(after: timedelta, phase: str) -> None:
    stuck = case("job-initializing-image-pull-backoff-shows-at-once")
    scheduled = parse_time("2025-03-04T10:13:00Z")  # the pod's PodScheduled transition
    assert derive(stuck, now=scheduled + after).phase == phase


def test_pending_timeout_is_a_parameter() -> None:
    stuck = case("job-initializing-image-pull-backoff-shows-at-once")
    status = derive(stuck, pending_timeout=timedelta(minutes=1))
    assert status.phase == "Failed"
    assert "stuck for more than 1m0s" in status.message


def test_requested_pods_can_come_from_the_spec() -> None:
    queued = case("job-pending-queued-by-kueue")
    assert derive(queued, requested_pods=4).pods.requested == 4


@pytest.mark.parametrize(
    "case_id",
    [
        "sts-running",
        "job-pending-unschedulable-insufficient-gpu",
        "sts-degraded-crash-loop",
        "job-initializing-image-pull-backoff-shows-at-once",
        "pytorchjob-completed",
    ],
)
def test_an_unchanged_cluster_gives_an_unchanged_status(case_id: str) -> None:
    observed = case(case_id)
    first = derive(observed)
    later = derive(
        observed, now=parse_time(observed["now"]) + timedelta(seconds=30), previous=first
    )
    assert not status_changed(first, later)
    assert later.conditions == first.conditions  # transition times carried over, too


def test_condition_times_carry_over_while_their_status_holds() -> None:
    start = case("sts-initializing")
    now = parse_time(start["now"])
    initializing = derive(start)
    running = derive(case("sts-running"), now=now + timedelta(minutes=1), previous=initializing)

    before = {c.type: c for c in initializing.conditions}
    after = {c.type: c for c in running.conditions}
    assert after["Applied"].last_transition_time == before["Applied"].last_transition_time == now
    assert after["PodsScheduled"].last_transition_time == now
    assert after["PodsReady"].status == "True"
    assert after["PodsReady"].last_transition_time == now + timedelta(minutes=1)


def test_status_changed_ignores_transition_times_only() -> None:
    when = parse_time("2025-03-04T10:00:00Z")
    condition = Condition("PodsReady", "True", "PodsReady", "1/1 pods ready", when)
    status = WorkloadStatus(
        phase="Running",
        message="1/1 pods ready",
        reason="PodsReady",
        conditions=(condition,),
        pods=PodCounts(requested=1, running=1),
    )
    later = (replace(condition, last_transition_time=when + timedelta(hours=1)),)

    assert status_changed(None, status)
    assert not status_changed(status, replace(status, conditions=later))
    assert status_changed(status, replace(status, phase="Degraded"))
    assert status_changed(replace(status, phase="Degraded"), status)
    assert status_changed(replace(status, message="2/2 pods ready"), status)
    assert status_changed(status, replace(status, message="2/2 pods ready"))
    assert status_changed(status, replace(status, pods=PodCounts(requested=1, pending=1)))
    assert status_changed(status, replace(status, conditions=(replace(condition, status="False"),)))


def test_status_round_trips_through_its_dict() -> None:
    status = derive(case("job-failed-backoff-limit-exceeded"))
    stored = status.to_dict()
    assert set(stored) == {"phase", "phaseMessage", "conditions", "pods"}
    assert stored["conditions"][-1]["lastTransitionTime"] == "2025-03-04T10:11:07Z"
    # The reason is for the event of a change, not stored: what reads back is all but it.
    assert WorkloadStatus.from_dict(stored) == replace(status, reason="")
    assert not status_changed(stored, status)


def test_status_changed_sees_a_change_either_way() -> None:
    running = derive(case("sts-running"))
    degraded = derive(case("sts-degraded-crash-loop"))
    initializing = derive(case("sts-initializing"))
    for a, b in [(running, degraded), (degraded, running), (running, initializing)]:
        assert status_changed(a, b)
        assert status_changed(b, a)
    # Same phase and message, different conditions: a change too, whichever way round.
    fewer = replace(running, conditions=running.conditions[:1])
    assert status_changed(running, fewer)
    assert status_changed(fewer, running)


def test_a_status_read_back_without_pods_counts_none() -> None:
    empty = {"requested": 0, "running": 0, "pending": 0, "succeeded": 0, "failed": 0}
    assert WorkloadStatus(phase="Creating", message="").to_dict()["pods"] == empty
    assert WorkloadStatus.from_dict({"phase": "Creating"}).pods.to_dict() == empty
    partial = WorkloadStatus.from_dict({"phase": "Running", "pods": {"running": 2}})
    assert partial.pods.to_dict() == {**empty, "running": 2}


def test_timestamps_without_a_zone_are_utc() -> None:
    assert parse_time("2025-03-04T10:00:00") == datetime(2025, 3, 4, 10, tzinfo=UTC)
    assert parse_time("2025-03-04T10:00:00Z") == datetime(2025, 3, 4, 10, tzinfo=UTC)
    assert parse_time("2025-03-04T12:00:00+02:00") == datetime(2025, 3, 4, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after_the_crash", "phase"),
    [
        (timedelta(minutes=9, seconds=59), "Degraded"),
        (timedelta(minutes=10), "Running"),
    ],
)
def test_a_crash_counts_for_ten_minutes(after_the_crash: timedelta, phase: str) -> None:
    restarted = case("sts-degraded-just-restarted-after-crash")
    crashed = parse_time("2025-03-04T10:12:50Z")  # the container's lastState finishedAt
    assert derive(restarted, now=crashed + after_the_crash).phase == phase


@pytest.mark.parametrize(
    ("timeout", "text"),
    [
        (timedelta(hours=1, minutes=30), "stuck for more than 1h30m0s: "),
        (timedelta(hours=1), "stuck for more than 1h0m0s: "),
        (timedelta(seconds=45), "stuck for more than 45s: "),
    ],
)
def test_the_pending_timeout_reads_as_kubernetes_prints_durations(
    timeout: timedelta, text: str
) -> None:
    stuck = case("job-initializing-image-pull-backoff-shows-at-once")
    scheduled = parse_time("2025-03-04T10:13:00Z")
    status = derive(stuck, now=scheduled + timeout + timedelta(seconds=1), pending_timeout=timeout)
    assert status.phase == "Failed"
    assert status.message.startswith(text)


def test_a_condition_that_turns_false_gets_a_new_transition_time() -> None:
    running = derive(case("sts-running"))
    later = parse_time(case("sts-degraded-crash-loop")["now"]) + timedelta(minutes=1)
    degraded = derive(case("sts-degraded-crash-loop"), now=later, previous=running)
    ready = {c.type: c for c in degraded.conditions}["PodsReady"]
    assert (ready.status, ready.last_transition_time) == ("False", later)
