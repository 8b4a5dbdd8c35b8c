"""The pure engine of the ``simulated`` cluster backend (SPEC §7): manifests in, objects out.

Given every active workload's applied manifests and when they were applied, :func:`simulate`
plays a deterministic Kubernetes lifecycle on a cluster of N nodes x G GPUs and returns each
workload's objects with the status their controllers would write, and its pods, shaped as an API
server shows them. It does no I/O, reads no clock (``now`` is a parameter) and draws no random
numbers; the backend around it stores the objects.

The model, kept small on purpose:

- Pods are created when the workload is applied (or resumed), wait ``schedule_seconds`` for the
  scheduler, then spend ``start_seconds`` in ``ContainerCreating`` and ``run_seconds`` running;
  Jobs and Kubeflow jobs then succeed, StatefulSets and Deployments run on. A Job with more
  completions than parallelism runs in waves.
- Only ``nvidia.com/gpu`` is scarce (a ``gpu-fraction`` pod takes a whole GPU). A workload's pods
  are placed all together or not at all, as Kueue and KAI-Scheduler do, first come first served
  by application time; a later workload that fits may pass one that does not (no head-of-line
  blocking). Placement replays history from the application times, so a workload queued behind
  a full cluster starts when capacity frees up, not at once.
- Annotations on the workload's object or its pod templates change its fate:
  ``simulation.runplane.io/outcome`` (``succeed``, ``fail``, ``image-pull-error``,
  ``crash-loop``), ``simulation.runplane.io/run-seconds``,
  ``simulation.runplane.io/start-seconds`` and ``simulation.runplane.io/exit-code`` (what
  ``fail`` and ``crash-loop`` exit with, 1 by default). ``fail`` exits at the end of the run: a
  Job then fails with ``BackoffLimitExceeded`` without retries; a StatefulSet's or Deployment's
  container restarts and crash-loops; a Kubeflow replica does what its ``restartPolicy`` (else
  its operator's default) says, Never staying down, OnFailure crash-looping.
  ``image-pull-error`` waits in ``ErrImagePull``/``ImagePullBackOff`` for ever; ``crash-loop``
  exits after at most 10 s each try, with the kubelet's back-off, whatever the pod's
  ``restartPolicy`` (which keeps the story to one pod). Restarts end at a Job's ``backoffLimit``
  (6 by default, an MPI launcher's too) or a training operator job's ``runPolicy.backoffLimit``
  (no default: for ever), which that operator counts over all of the job's pods together; the
  operators then fail the job in their own words and, but for MPI's workers, delete its pods.
  (The test cluster's kwok Stages, ``tests/kube/kwok-outcomes.yaml``, play the same annotations
  with the kubelet's own rules, under the real operators.)

Speed: a reconcile cycle over 10,000 workloads has a few tens of microseconds for each. Outputs
therefore share unchanged sub-objects (pod specs, label maps) with the inputs, and a
:class:`SimCache` passed from one call to the next returns a workload's previous result while
its inputs are equal and its timeline has crossed no step, which is what the result depends on.
Treat inputs and outputs as read-only.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from app.domain import kinds, scheduling
from app.domain.labels import GPU_RESOURCE, PROJECT_LABEL
from app.domain.labels import KAI_GPU_FRACTION_ANNOTATION as GPU_FRACTION_ANNOTATION
from app.domain.quota import NO_QUOTA, Quota, ResourceQuota
from app.domain.resources import template_requests

OUTCOME_ANNOTATION = "simulation.runplane.io/outcome"
# The reason Kubernetes' schedulers give a pod they evict to make room for another.
PREEMPTION_REASON = "PreemptionByScheduler"
RUN_SECONDS_ANNOTATION = "simulation.runplane.io/run-seconds"
START_SECONDS_ANNOTATION = "simulation.runplane.io/start-seconds"
EXIT_CODE_ANNOTATION = "simulation.runplane.io/exit-code"
Outcome = Literal["succeed", "fail", "image-pull-error", "crash-loop"]
OUTCOMES: tuple[Outcome, ...] = ("succeed", "fail", "image-pull-error", "crash-loop")

# The kinds that own a workload's pods, the workload's main object first.
_OWNERS = sorted(
    (k for k in kinds.MANAGED if k.owner_rank is not None), key=lambda k: k.owner_rank or 0
)


def _finite(kind: str) -> bool:
    found = kinds.named(kind)
    return found is not None and found.finite


def _kubeflow(kind: str) -> bool:
    found = kinds.named(kind)
    return found is not None and found.replica_specs is not None


# The kinds the training operator runs (the MPI operator runs MPIJobs).
_TRAINING_OPERATOR_KINDS = ("PyTorchJob", "TFJob")


_INF = math.inf
_CRASH_TRY_SECONDS = 10.0  # how long a crash-looping container lives each try
_BACKOFF_CAP = 300.0  # the kubelet's restart back-off: 10 s, doubling, capped at 5 min
_IMAGE_PULL_RETRY = 10.0  # ErrImagePull for this long, then ImagePullBackOff
_GRACE = 30  # terminationGracePeriodSeconds of a deleted pod
# kube-controller-manager's rand.SafeEncodeString alphabet, for generated name suffixes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


# --- inputs and outputs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """The simulated cluster: ``nodes`` identical nodes with ``gpus_per_node`` GPUs each (and
    CPU and memory, which are shown but not scarce)."""

    nodes: int
    gpus_per_node: int
    cpu_per_node: str = "64"
    memory_per_node: str = "512Gi"

    def node_name(self, index: int) -> str:
        return f"sim-node-{index}"

    def node_objects(self) -> list[dict[str, Any]]:
        """The nodes as the API server shows them (the parts node pools are read from)."""
        resources = {
            "cpu": self.cpu_per_node,
            "memory": self.memory_per_node,
            GPU_RESOURCE: str(self.gpus_per_node),
            "pods": "110",
        }
        return [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": self.node_name(i),
                    "labels": {"kubernetes.io/hostname": self.node_name(i)},
                },
                "spec": {},
                "status": {"allocatable": resources, "capacity": resources},
            }
            for i in range(self.nodes)
        ]


def parse_nodes(text: str) -> ClusterShape:
    """``"4x8"`` -> 4 nodes with 8 GPUs each; raises ValueError on anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not NODESxGPUS, for example '4x8'")
    nodes, gpus = int(match.group(1)), int(match.group(2))
    if not 1 <= nodes <= 100_000 or gpus > 1024:
        raise ValueError(f"{text!r}: need 1 to 100000 nodes and at most 1024 GPUs per node")
    return ClusterShape(nodes=nodes, gpus_per_node=gpus)


@dataclass(frozen=True, slots=True)
class Timing:
    """How long each step takes where a workload's annotations do not say."""

    schedule_seconds: float = 1.0
    start_seconds: float = 10.0
    run_seconds: float = 60.0
    terminate_seconds: float = 5.0  # pods linger, terminating, this long after a stop


@dataclass(frozen=True, slots=True)
class SimInput:
    """One workload as the backend stores it.

    ``manifests`` are the objects as last applied (stopped ones have ``suspend: true`` or
    ``replicas: 0``). ``resumed_at`` is when a stop was last lifted and ``stopped_at`` when the
    current stop was applied (a stopped workload held its GPUs until then). ``scheduled_at`` is
    what a previous :class:`SimResult` said: passed back, it pins the placement, so that deleting
    a workload this one queued behind does not move its start into the past. A pin older than
    the last start (applied or resumed) is ignored. ``preempted_at`` and ``preempted_by`` are
    what a previous result said of the workload's last preemption (its pods start again then).
    """

    key: str
    manifests: Sequence[Mapping[str, Any]]
    applied_at: datetime
    resumed_at: datetime | None = None
    stopped_at: datetime | None = None
    scheduled_at: datetime | None = None
    preempted_at: datetime | None = None
    preempted_by: str | None = None


@dataclass(frozen=True, slots=True)
class SimResult:
    """A workload's observed objects (with ``status``) and pods.

    ``scheduled_at`` is when its pods were placed (None while they wait; waiting since an
    eviction, when they had been placed), and ``preempted_at`` and ``preempted_by`` when and why
    the scheduler last evicted them: to store and pass back.
    """

    key: str
    objects: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    scheduled_at: datetime | None
    preempted_at: datetime | None = None
    preempted_by: str | None = None


class SimCache:
    """What one :func:`simulate` call hands to the next: keep one per backend, pass it to all.

    It holds what each workload's manifests imply and its last result with the time until which
    that result holds, so a cached call returns what an uncached one would, only faster. It also
    remembers which workloads were still waiting for the scheduler, so that none is placed
    before a time it was seen waiting even when the workloads ahead of it are deleted (the
    waiting ones have no ``scheduled_at`` to pin). Entries of workloads absent from a call are
    dropped. Manifests must not be mutated in place between calls.
    """

    __slots__ = ("_results", "_statics", "_timing", "_waiting")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._statics: dict[str, _Static] = {}
        self._results: dict[str, tuple[tuple[Any, ...], float, float, SimResult]] = {}
        self._waiting: dict[str, float] = {}
        self._timing: Timing | None = None


# --- what the manifests say ----------------------------------------------------------------------


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


_EMPTY: Mapping[str, Any] = {}


def _m(value: Any) -> Mapping[str, Any]:
    # dict first: isinstance() against the Mapping ABC is slow enough to show in a profile.
    if isinstance(value, dict) or isinstance(value, Mapping):
        return value
    return _EMPTY


def _int(value: Any, default: int) -> int:
    return value if type(value) is int else default


def _seconds(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def _exit_code(value: Any) -> int:
    """A failing container's exit code: 1 unless the annotation names another (1-255)."""
    try:
        code = int(value)
    except (TypeError, ValueError):
        return 1
    return code if 1 <= code <= 255 else 1


def _digest(*parts: str) -> bytes:
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).digest()


def _uid(digest: bytes) -> str:
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _suffix(digest: bytes, length: int, skip: int = 0) -> str:
    return "".join([_SAFE[b % 27] for b in digest[skip : skip + length]])


@dataclass(slots=True, eq=False)
class _Group:
    """Pods from one template: a Job's, a StatefulSet's, or one Kubeflow replica type's."""

    role: str  # the Kubeflow replica type, "" otherwise
    template: Mapping[str, Any]
    restarts: bool  # the kubelet restarts a failed container in place (OnFailure, Always)
    spec: Mapping[str, Any]
    count: int
    gpus: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str] | None
    containers: list[tuple[str, str, str]]  # (name, image, imageID)
    unready: tuple[str, str]
    qos: str


def _group(role: str, template: Mapping[str, Any], count: int, restarts: bool) -> _Group:
    tmeta, tspec = _m(template.get("metadata")), _m(template.get("spec"))
    gpus = 0
    containers: list[tuple[str, str, str]] = []
    requested = False
    guaranteed = True
    for c in tspec.get("containers") or ():
        image = str(c.get("image", ""))
        image_id = f"{image}@sha256:{_digest(image).hex() * 2}"
        containers.append((str(c.get("name", "main")), image, image_id))
        res = _m(c.get("resources"))
        limits, requests = _m(res.get("limits")), _m(res.get("requests"))
        try:
            gpus += math.ceil(float(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0))))
        except (TypeError, ValueError):
            pass
        # QoS classes look at CPU and memory only: a GPU-only pod is BestEffort.
        for r in ("cpu", "memory"):
            requested = requested or r in limits or r in requests
            if r not in limits or requests.get(r, limits[r]) != limits[r]:
                guaranteed = False
    annotations = _m(tmeta.get("annotations")) or None
    if gpus == 0 and annotations and annotations.get(GPU_FRACTION_ANNOTATION):
        gpus = 1  # a fraction still needs a GPU with room; the simulation gives it a whole one
    names = " ".join(c[0] for c in containers)
    return _Group(
        role=role,
        template=template,
        restarts=restarts,
        spec=tspec,
        count=count,
        gpus=gpus,
        labels=_m(tmeta.get("labels")),
        annotations=annotations,
        containers=containers,
        unready=("ContainersNotReady", f"containers with unready status: [{names}]"),
        qos=("Guaranteed" if guaranteed else "Burstable") if requested else "BestEffort",
    )


@dataclass(slots=True, eq=False)
class _Static:
    """What a workload's manifests imply, whatever the time."""

    manifests: Sequence[Mapping[str, Any]]
    primary: Mapping[str, Any] | None
    kind: str
    stopped: bool
    stopped_pods: int  # pods shown terminating just after a stop
    outcome: Outcome
    start_seconds: float
    run_seconds: float
    exit_code: int  # of fail and crash-loop
    groups: list[_Group]
    gpus: list[int]  # per pod when running, in group order (a stopped workload's too)
    shape: tuple[int, ...]  # the non-zero GPU requests, largest first
    hold: float  # seconds the pods keep their GPUs once scheduled
    waves: int
    completions: int
    project: str
    name: str  # the workload's (its main object's)
    priority: int
    preemptible: bool
    quota_gpus: Decimal  # what its pods count against the project's quota (fractions as such)


def _simulation_annotations(sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``simulation.runplane.io/`` annotations, the first source that has one winning."""
    found: dict[str, Any] = {}
    for source in reversed(sources):
        for name, value in _m(_m(source.get("metadata")).get("annotations")).items():
            if name.startswith("simulation.runplane.io/"):
                found[name] = value
    return found


def _static(manifests: Sequence[Mapping[str, Any]], timing: Timing) -> _Static:
    by_kind = {m.get("kind"): m for m in manifests}
    owner = next((k for k in _OWNERS if k.kind in by_kind), None)
    kind = owner.kind if owner is not None else ""
    finite = owner is not None and owner.finite
    primary = by_kind.get(kind)
    spec = _m(primary.get("spec")) if primary is not None else _EMPTY
    groups: list[_Group] = []
    stopped = False
    waves = completions = 1
    stopped_pods = 0
    if kind == "Job":
        parallelism = _int(spec.get("parallelism"), 1)
        completions = _int(spec.get("completions"), parallelism)
        # Runplane renders a Job's pods with restartPolicy Never: the Job controller retries.
        groups.append(_group("", _m(spec.get("template")), min(parallelism, completions), False))
        waves = max(1, math.ceil(completions / max(groups[0].count, 1)))
        stopped = spec.get("suspend") is True
    elif kind in ("StatefulSet", "Deployment"):
        replicas = _int(spec.get("replicas"), 1)
        hpa = by_kind.get("HorizontalPodAutoscaler")
        minimum = _int(_m(hpa.get("spec")).get("minReplicas"), 1) if hpa is not None else 1
        if hpa is not None and replicas > 0:  # the autoscaler lifts it to its minimum at once
            replicas = max(replicas, minimum)
        groups.append(_group("", _m(spec.get("template")), replicas, True))
        stopped = replicas == 0
        # A stopped manifest no longer says how many pods there were: its usual size.
        stopped_pods = minimum if stopped else 0
    elif owner is not None and owner.replica_specs:
        for role, rs in _m(spec.get(owner.replica_specs)).items():
            template = _m(_m(rs).get("template"))
            restarts = _restarts_in_place(kind, role, _m(rs).get("restartPolicy"))
            groups.append(_group(role, template, _int(_m(rs).get("replicas"), 1), restarts))
        stopped = _m(spec.get("runPolicy")).get("suspend") is True
    if finite:
        stopped_pods = sum(g.count for g in groups)

    # Annotations may sit on the workload object or only on its pod templates.
    sources = [*([primary] if primary is not None else []), *(g.template for g in groups)]
    annotations = _simulation_annotations(sources)
    outcome_text = annotations.get(OUTCOME_ANNOTATION)
    outcome: Outcome = outcome_text if outcome_text in OUTCOMES else "succeed"
    start_seconds = _seconds(annotations.get(START_SECONDS_ANNOTATION), timing.start_seconds)
    run_seconds = _seconds(annotations.get(RUN_SECONDS_ANNOTATION), timing.run_seconds)
    exit_code = _exit_code(annotations.get(EXIT_CODE_ANNOTATION))
    hold = _INF
    if finite:
        if outcome == "succeed":
            hold = waves * (start_seconds + run_seconds)
        elif outcome in ("fail", "crash-loop"):
            # A Job's limit defaults to 6, and so does an MPI launcher's (a Job); the training
            # operator has none: without one it restarts the replicas for ever.
            own = spec if kind == "Job" else _m(spec.get("runPolicy"))
            limit = own.get("backoffLimit", None if kind in _TRAINING_OPERATOR_KINDS else 6)
            hold = start_seconds + _gives_up_after(kind, outcome, groups, limit, run_seconds)
    gpus = [g.gpus for g in groups for _ in range(g.count)]
    counts = [g.count for g in groups]
    if stopped and kind in ("StatefulSet", "Deployment"):
        gpus = [groups[0].gpus] * stopped_pods
        counts = [stopped_pods]
    quota_gpus = sum(
        (template_requests(g.template).gpu * n for g, n in zip(groups, counts, strict=True)),
        Decimal(0),
    )
    priority, preemptible = scheduling.of_object(
        primary or _EMPTY, groups[0].template if groups else _EMPTY
    )
    return _Static(
        manifests=manifests,
        primary=primary,
        kind=kind,
        stopped=stopped,
        stopped_pods=stopped_pods,
        outcome=outcome,
        start_seconds=start_seconds,
        run_seconds=run_seconds,
        exit_code=exit_code,
        groups=groups,
        gpus=gpus,
        shape=tuple(sorted((g for g in gpus if g > 0), reverse=True)),
        hold=hold,
        waves=waves,
        completions=completions,
        project=str(
            _m(_m((primary or _EMPTY).get("metadata")).get("labels")).get(PROJECT_LABEL, "")
        ),
        name=str(_m(primary.get("metadata")).get("name", "")) if primary is not None else "",
        priority=priority,
        preemptible=preemptible,
        quota_gpus=quota_gpus,
    )


# --- the crash-loop clock ------------------------------------------------------------------------


def _backoff(restarts: int) -> float:
    return min(10.0 * 2.0 ** min(restarts - 1, 16), _BACKOFF_CAP)


def _tries(outcome: Outcome, run_seconds: float) -> tuple[float, float]:
    """How long a restarting container lives its first try, and every later one: ``fail`` runs
    its course once, then fails as quickly as a crash-loop does."""
    again = min(run_seconds, _CRASH_TRY_SECONDS)
    return (run_seconds if outcome == "fail" else again), again


def _crash_time(crashes: int, first: float, again: float) -> float:
    """Seconds from a restarting container's first start to its ``crashes``-th exit."""
    return first + (crashes - 1) * again + sum(_backoff(k) for k in range(1, crashes))


def _restarts_in_place(kind: str, role: str, policy: Any) -> bool:
    """Whether a Kubeflow replica's failed container restarts in place: its restartPolicy, else
    its operator's default (PyTorch OnFailure, TF Never; MPI: the launcher OnFailure, workers
    Never). ``ExitCode`` makes the operator recreate the pod for a retryable code alone."""
    if not policy:
        policy = "OnFailure" if kind == "PyTorchJob" or role == "Launcher" else "Never"
    return policy in ("OnFailure", "Always")


def _gives_up_after(
    kind: str, outcome: Outcome, groups: Sequence[_Group], limit: Any, run_seconds: float
) -> float:
    """Seconds from a failing finite workload's start until its controller fails it.

    ``fail`` in a pod that does not restart ends it after one run (a Job's retries are not
    played). Otherwise containers restart in place, ``crash-loop`` ones whatever their policy,
    until the restarts reach the backoff limit (none: for ever): for the training operator the
    restarts of all of the job's restarting pods together, for a Job (an MPI launcher's too)
    those of one pod.
    """
    restarting = [g for g in groups if outcome == "crash-loop" or g.restarts]
    if kind == "MPIJob":  # its launcher Job decides; the workers do not count
        restarting = [g for g in restarting if g.role == "Launcher"]
        stays_down = outcome == "fail" and not restarting
    else:
        stays_down = outcome == "fail" and len(restarting) < len(groups)
    first, again = _tries(outcome, run_seconds)
    if stays_down:
        return run_seconds
    if type(limit) is not int:
        return _INF
    crashes = max(limit, 1)
    if kind in _TRAINING_OPERATOR_KINDS:
        crashes = max(1, math.ceil(limit / max(1, sum(g.count for g in restarting))))
    return _crash_time(crashes, first, again)


def _crash_clock(elapsed: float, first: float, again: float) -> tuple[int, bool, float, float]:
    """A restarting container ``elapsed`` seconds after its first start.

    Returns (restarts so far, running now, start of the current or last try, end of the last
    failed try). ``first`` is how long the first try lives, ``again`` every later one.
    """
    restarts, t, last_end, duration = 0, 0.0, 0.0, first
    while True:
        if elapsed < t + duration:
            return restarts, True, t, last_end
        last_end = t + duration
        restarts += 1
        backoff = _backoff(restarts)
        if elapsed < last_end + backoff:
            return restarts, False, t, last_end
        t, duration = last_end + backoff, again
        if backoff >= _BACKOFF_CAP:
            # From here on every cycle is the same: skip whole cycles instead of looping.
            cycles = int((elapsed - t) // (again + _BACKOFF_CAP))
            if cycles > 0:
                t += cycles * (again + _BACKOFF_CAP)
                restarts += cycles
                last_end = t - _BACKOFF_CAP


# --- per-call plans and scheduling ---------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Plan:
    seq: int  # position in the input
    key: str
    static: _Static
    applied: float  # objects created
    start: float  # pods created: applied, or resumed
    stopped_at: float | None
    arrival: float  # when the scheduler first looks at it
    fixed: float | None  # a pinned placement time
    not_before: float = 0.0  # seen still waiting then: it cannot have been placed earlier
    entry: float = 0.0  # when it joins the scheduler's queue: max(arrival, not_before)
    scheduled: float | None = None
    nodes: list[int] = field(default_factory=list)
    unschedulable: str | None = None
    preempted_at: float | None = None
    preempted_by: str | None = None
    held: int = 0  # bumped on each preemption: a release scheduled before it is void
    # Evicted, and waiting since: when it had been placed (it held its GPUs until the eviction,
    # which a replay must show, as for a stop). A placement it held this way is a ``ghost``.
    held_from: float | None = None
    until: float = _INF
    ghost: bool = False


def _plan(seq: int, item: SimInput, static: _Static, timing: Timing, now: float) -> _Plan:
    applied = min(_epoch(item.applied_at), now)
    start = applied
    if item.resumed_at is not None:
        start = min(max(start, _epoch(item.resumed_at)), now)
    held_from = None
    if item.preempted_at is not None:
        preempted = _epoch(item.preempted_at)
        pinned = None if item.scheduled_at is None else _epoch(item.scheduled_at)
        if pinned is not None and start <= pinned < preempted:
            held_from = pinned  # placed, then evicted: it held its GPUs in between
        start = min(max(start, preempted), now)
    arrival, fixed = start + timing.schedule_seconds, None
    if item.scheduled_at is not None:
        pinned = _epoch(item.scheduled_at)
        if pinned >= start:  # else: from before a stop or an eviction
            arrival = fixed = pinned
    return _Plan(
        seq=seq,
        key=item.key,
        static=static,
        applied=applied,
        start=start,
        stopped_at=None if item.stopped_at is None else min(_epoch(item.stopped_at), now),
        arrival=arrival,
        fixed=fixed,
        preempted_at=None if item.preempted_at is None else _epoch(item.preempted_at),
        preempted_by=item.preempted_by,
        held_from=held_from,
    )


class _Capacity:
    """Free GPUs per node, with nodes bucketed by free count for best-fit placement."""

    __slots__ = ("buckets", "free", "gpus")

    def __init__(self, nodes: int, gpus: int) -> None:
        self.gpus = gpus
        self.free = [gpus] * nodes
        self.buckets: list[dict[int, None]] = [{} for _ in range(gpus + 1)]
        self.buckets[gpus] = dict.fromkeys(range(nodes))

    def fits(self, shape: tuple[int, ...]) -> bool:
        return _fits([len(b) for b in self.buckets], shape, self.gpus)

    def take(self, gpus: int) -> int:
        """Best fit: the fullest node that still has room (or, pinned, the emptiest)."""
        for f in range(gpus, self.gpus + 1):
            if self.buckets[f]:
                break
        else:  # a pinned placement that no longer fits (the cluster shrank): overcommit
            f = next(f for f in range(self.gpus, -1, -1) if self.buckets[f])
        node, _ = self.buckets[f].popitem()
        self.free[node] -= gpus
        self.buckets[max(self.free[node], 0)][node] = None
        return node

    def give(self, node: int, gpus: int) -> None:
        del self.buckets[max(self.free[node], 0)][node]
        self.free[node] += gpus
        self.buckets[max(self.free[node], 0)][node] = None

    def take_node(self, node: int, gpus: int) -> None:
        """Take GPUs of one given node back (undoing a :meth:`give`)."""
        self.give(node, -gpus)


def _fits(counts: list[int], shape: tuple[int, ...], gpus_per_node: int) -> bool:
    """Whether pods of these sizes fit on nodes counted by free GPUs (``counts`` is consumed)."""
    for g in shape:
        for f in range(g, gpus_per_node + 1):
            if counts[f]:
                counts[f] -= 1
                counts[f - g] += 1
                break
        else:
            return False
    return True


class _Ledger:
    """What each project holds of its GPU quota while the schedule is replayed, and the rules
    of KAI-Scheduler's that use it (app.domain.scheduling)."""

    __slots__ = ("np_used", "quotas", "running", "used")

    def __init__(self, quotas: Mapping[str, Quota]) -> None:
        self.quotas = quotas
        self.used: dict[str, Decimal] = {}
        self.np_used: dict[str, Decimal] = {}
        self.running: dict[str, dict[int, _Plan]] = {}

    def quota(self, project: str) -> ResourceQuota:
        return (self.quotas.get(project) or NO_QUOTA).gpu

    def add(self, plan: _Plan, sign: int = 1) -> None:
        s = plan.static
        self.used[s.project] = self.used.get(s.project, _ZERO) + sign * s.quota_gpus
        if not s.preemptible:
            self.np_used[s.project] = self.np_used.get(s.project, _ZERO) + sign * s.quota_gpus
        running = self.running.setdefault(s.project, {})
        if sign > 0:
            running[plan.seq] = plan
        else:
            running.pop(plan.seq, None)

    def within(self, plan: _Plan) -> bool:
        """Whether it would stay within its project's deserved quota."""
        q, s = self.quota(plan.static.project), plan.static
        return q.deserved is None or self.used.get(s.project, _ZERO) + s.quota_gpus <= q.deserved

    def admissible(self, plan: _Plan) -> bool:
        """Whether the quota lets it start (capacity aside)."""
        s = plan.static
        q = self.quota(s.project)
        if q.deserved is None:
            return True
        used = self.used.get(s.project, _ZERO) + s.quota_gpus
        if q.cap is not None and used > q.cap:
            return False
        if not s.preemptible:  # never over quota
            return self.np_used.get(s.project, _ZERO) + s.quota_gpus <= q.deserved
        return used <= q.deserved or q.over_quota_weight > 0

    def order(self, plan: _Plan) -> tuple[Any, ...]:
        """Who goes first: within quota before over it; over quota, the project with the least
        borrowed for its weight; then priority, then arrival."""
        s = plan.static
        q = self.quota(s.project)
        if self.within(plan) or q.deserved is None:
            return (0, _ZERO, -s.priority, plan.arrival, plan.key)
        over = self.used.get(s.project, _ZERO) + s.quota_gpus - q.deserved
        return (1, over / q.over_quota_weight, -s.priority, plan.arrival, plan.key)

    def victims(self, reclaimer: _Plan) -> list[_Plan]:
        """Preemptible running workloads of other projects over their deserved quota, the most
        over (for its weight) first, then the lowest priority, then the latest placed."""
        found: list[tuple[Any, ...]] = []
        for project, running in self.running.items():
            q = self.quota(project)
            over = self.used.get(project, _ZERO) - (q.deserved or _ZERO)
            if project == reclaimer.static.project or q.deserved is None or over <= 0:
                continue
            ratio = over / q.over_quota_weight if q.over_quota_weight else over * 1000
            for v in running.values():
                if v.static.preemptible and v.static.quota_gpus > 0 and not v.ghost:
                    found.append((-ratio, v.static.priority, -(v.scheduled or 0), v.seq, v))
        found.sort(key=lambda t: t[:4])
        return [t[4] for t in found]

    def reclaimable(self, victim: _Plan) -> bool:
        """Only what a project holds over its deserved quota is taken back."""
        q = self.quota(victim.static.project)
        used = self.used.get(victim.static.project, _ZERO)
        return q.deserved is not None and used - victim.static.quota_gpus >= q.deserved

    def waiting_words(self, plan: _Plan) -> str:
        """The simulated scheduler's words for a workload its quota holds back."""
        s = plan.static
        q = self.quota(s.project)
        used = self.used.get(s.project, _ZERO)
        return (
            f"queue {s.project} cannot allocate {scheduling.gpus(s.quota_gpus)}: "
            f"{scheduling.quota_words(s.project, q, used)}"
            + ("" if s.preemptible else "; non-preemptible workloads stay within quota")
        )


_ZERO = Decimal(0)


def _schedule(
    plans: list[_Plan],
    cluster: ClusterShape,
    now: float,
    *,
    quotas: Mapping[str, Quota],
    timing: Timing,
) -> None:
    """Place every plan's pods, replaying arrivals and releases in time order up to ``now``,
    with the projects' quotas as KAI-Scheduler applies them: in-quota work first, over-quota
    (preemptible) work on idle capacity by weight, and reclaim: a workload within its deserved
    quota that does not fit evicts over-quota workloads of other projects, which wait again."""
    nodes, per_node = cluster.nodes, cluster.gpus_per_node
    capacity = _Capacity(nodes, per_node)
    ledger = _Ledger(quotas)
    empty = [0] * per_node + [nodes]
    insufficient = f"0/{nodes} nodes are available: {nodes} Insufficient {GPU_RESOURCE}."
    # A stopped workload held its GPUs from its placement until the stop: replaying that keeps
    # the workloads queued behind it from starting in the past.
    order = [
        p for p in plans if p.static.gpus and (not p.static.stopped or _stopped_after(p, p.arrival))
    ]
    for p in order:
        p.entry = max(p.arrival, p.not_before)
    order += [_ghost(p) for p in plans if p.held_from is not None and p.preempted_at is not None]
    order.sort(key=lambda p: (p.entry, p.arrival, p.key))
    releases: list[tuple[float, int, int, _Plan]] = []
    # Waiting plans by project, priority, preemptibility and the shape of their request: when
    # such a queue's first plan cannot start, none behind it can, so each pass looks at one plan
    # per queue.
    queues: dict[tuple[str, int, bool, tuple[int, ...]], deque[_Plan]] = {}

    def queue_of(plan: _Plan) -> tuple[str, int, bool, tuple[int, ...]]:
        s = plan.static
        return (s.project, s.priority, s.preemptible, s.shape)

    def place(plan: _Plan, at: float) -> None:
        gpus = plan.static.gpus
        plan.scheduled = at
        plan.nodes = [0] * len(gpus)
        for i in sorted(range(len(gpus)), key=gpus.__getitem__, reverse=True):
            plan.nodes[i] = capacity.take(gpus[i]) if gpus[i] else (plan.seq + i) % nodes
        ledger.add(plan)
        release = min(at + plan.static.hold, plan.until)
        if plan.static.stopped and plan.stopped_at is not None:
            release = min(release, plan.stopped_at)
        if release < _INF and plan.static.shape:
            heapq.heappush(releases, (release, plan.seq, plan.held, plan))

    def free(plan: _Plan) -> None:
        for node, g in zip(plan.nodes, plan.static.gpus, strict=True):
            if g:
                capacity.give(node, g)

    def drain(at: float) -> None:
        while queues:
            best: _Plan | None = None
            best_order: tuple[Any, ...] = ()
            for key, queue in list(queues.items()):
                while queue and queue[0].static.stopped and not _stopped_after(queue[0], at):
                    queue.popleft()  # stopped while it waited: it never ran
                if not queue:
                    del queues[key]
                    continue
                head = queue[0]
                if not ledger.admissible(head) or not capacity.fits(head.static.shape):
                    continue
                rank = ledger.order(head)
                if best is None or rank < best_order:
                    best, best_order = head, rank
            if best is None:
                return
            queue = queues[queue_of(best)]
            queue.popleft()
            if not queue:
                del queues[queue_of(best)]
            place(best, at)

    def reclaim(at: float) -> bool:
        """Evict over-quota workloads for the first in-quota one that does not fit."""
        heads = [q[0] for q in queues.values() if q and ledger.within(q[0])]
        heads.sort(key=lambda p: (-p.static.priority, p.arrival, p.key))
        for plan in heads:
            if not ledger.admissible(plan) or capacity.fits(plan.static.shape):
                continue
            chosen: list[_Plan] = []
            for victim in ledger.victims(plan):
                if not ledger.reclaimable(victim):
                    continue
                free(victim)
                ledger.add(victim, -1)
                chosen.append(victim)
                if capacity.fits(plan.static.shape):
                    break
            if not capacity.fits(plan.static.shape):
                for victim in chosen:  # no use: give everything back as it was
                    for node, g in zip(victim.nodes, victim.static.gpus, strict=True):
                        if g:
                            capacity.take_node(node, g)
                    ledger.add(victim)
                continue
            what = scheduling.gpus(plan.static.quota_gpus)
            for victim in chosen:
                q = ledger.quota(victim.static.project)
                victim.held += 1
                victim.held_from = victim.scheduled
                victim.scheduled, victim.nodes, victim.fixed = None, [], None
                victim.preempted_at = victim.start = at
                victim.arrival = victim.entry = at + timing.schedule_seconds
                victim.preempted_by = (
                    f"project {plan.static.project} reclaimed {what} of its deserved quota "
                    f"for workload {plan.static.name}; project {victim.static.project} was "
                    f"over its deserved {scheduling.number(q.deserved or _ZERO)}"
                )
                queues.setdefault(queue_of(victim), deque()).append(victim)
            return True
        return False

    i = 0
    dirty = False
    while True:
        next_arrival = order[i].entry if i < len(order) else _INF
        next_release = releases[0][0] if releases else _INF
        at = min(next_arrival, next_release)
        if at > now:
            break
        # Everything that happens at one instant, then one scheduling pass over all that waits
        # (as the scheduler's sessions see every pending workload together).
        while releases and releases[0][0] <= at:
            _, _, held, done = heapq.heappop(releases)
            if held == done.held and done.scheduled is not None:
                free(done)
                ledger.add(done, -1)
                dirty = True
        while i < len(order) and order[i].entry <= at:
            plan = order[i]
            i += 1
            if plan.static.stopped and not _stopped_after(plan, at):
                pass
            elif plan.fixed is not None or not plan.static.shape:
                place(plan, at)  # a placement made before: it only takes capacity
            elif not _fits(empty.copy(), plan.static.shape, per_node):
                plan.unschedulable = insufficient  # no amount of waiting helps
            else:
                queues.setdefault(queue_of(plan), deque()).append(plan)
                dirty = True
        if dirty:
            drain(at)
            while reclaim(at):
                drain(at)
            dirty = False
    for queue in queues.values():
        for plan in queue:
            plan.unschedulable = (
                insufficient if ledger.admissible(plan) else ledger.waiting_words(plan)
            )


def _ghost(plan: _Plan) -> _Plan:
    """What an evicted plan held from its placement until the eviction, to replay."""
    assert plan.held_from is not None
    assert plan.preempted_at is not None
    ghost = _Plan(
        seq=plan.seq,
        key=plan.key,
        static=plan.static,
        applied=plan.applied,
        start=plan.held_from,
        stopped_at=None,
        arrival=plan.held_from,
        fixed=plan.held_from,
        until=plan.preempted_at,
        ghost=True,
    )
    ghost.entry = plan.held_from
    return ghost


def _stopped_after(plan: _Plan, at: float) -> bool:
    return plan.stopped_at is not None and plan.stopped_at > at


def _next_change(plan: _Plan, timing: Timing, now: float) -> float:
    """The first moment after ``now`` at which the plan's observed objects change."""
    s = plan.static
    marks: list[float] = []
    if s.stopped:
        if plan.stopped_at is not None:
            marks.append(plan.stopped_at + timing.terminate_seconds)
    else:
        marks.append(plan.arrival)
        if s.kind == "Deployment":
            marks.append(plan.start + _progress_deadline(s))
        scheduled = plan.scheduled
        if scheduled is not None:
            ready = scheduled + s.start_seconds
            marks.append(ready)
            finite = _finite(s.kind)
            if s.outcome == "image-pull-error":
                marks.append(ready + _IMAGE_PULL_RETRY)
            elif s.outcome == "crash-loop" or (
                s.outcome == "fail" and any(g.restarts for g in s.groups)
            ):
                first, again = _tries(s.outcome, s.run_seconds)
                if finite and s.outcome == "fail":
                    marks.append(ready + s.run_seconds)  # the pods that stay down fail then
                if now >= ready:
                    restarts, running, tried, last_end = _crash_clock(now - ready, first, again)
                    if running:
                        marks.append(ready + tried + (first if restarts == 0 else again))
                    else:
                        marks.append(ready + last_end + _backoff(restarts))
                marks.append(scheduled + s.hold)
            elif finite and s.outcome == "fail":
                marks.append(ready + s.run_seconds)
            elif finite:
                cycle = s.start_seconds + s.run_seconds
                wave = int((now - scheduled) // cycle) if cycle > 0 else 0
                marks.append(scheduled + wave * cycle + s.start_seconds)
                marks.append(scheduled + (wave + 1) * cycle)
    return min([m for m in marks if m > now], default=_INF)


def _progress_deadline(s: _Static) -> float:
    spec = _m(s.primary.get("spec")) if s.primary is not None else _EMPTY
    return float(_int(spec.get("progressDeadlineSeconds"), 600))


# --- observing -----------------------------------------------------------------------------------


def _formatter() -> Callable[[float], str]:
    """RFC 3339 seconds, memoised: many objects share few instants."""
    memo: dict[float, str] = {}

    def ts(t: float) -> str:
        text = memo.get(t)
        if text is None:
            text = memo[t] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return text

    return ts


@dataclass(slots=True)
class _Ctx:
    """What every pod of one workload shares."""

    plan: _Plan
    cluster: ClusterShape
    timing: Timing
    now: float
    ts: Callable[[float], str]
    namespace: str
    owner: dict[str, Any]


def _pod_conditions(
    ts: Callable[[float], str],
    scheduled: float,
    ready: bool,
    ready_since: float,
    not_ready: tuple[str, str],
) -> list[dict[str, Any]]:
    at = ts(scheduled)
    if ready:
        readiness: dict[str, Any] = {"status": "True"}
    elif not_ready[1]:
        readiness = {"message": not_ready[1], "reason": not_ready[0], "status": "False"}
    else:
        readiness = {"reason": not_ready[0], "status": "False"}
    since = ts(ready_since)
    return [
        {
            "lastProbeTime": None,
            "lastTransitionTime": at,
            "status": "True",
            "type": "PodReadyToStartContainers",
        },
        {"lastProbeTime": None, "lastTransitionTime": at, "status": "True", "type": "Initialized"},
        {"lastProbeTime": None, "lastTransitionTime": since, **readiness, "type": "Ready"},
        {
            "lastProbeTime": None,
            "lastTransitionTime": since,
            **readiness,
            "type": "ContainersReady",
        },
        {"lastProbeTime": None, "lastTransitionTime": at, "status": "True", "type": "PodScheduled"},
    ]


def _pull_error(image: str, since_start: float) -> dict[str, Any]:
    """The kubelet's words for an image that cannot be pulled: first the error, then back-off."""
    if since_start < _IMAGE_PULL_RETRY:
        return {
            "waiting": {
                "message": f"rpc error: code = NotFound desc = failed to pull and unpack image "
                f'"{image}": failed to resolve reference "{image}": {image}: not found',
                "reason": "ErrImagePull",
            }
        }
    return {
        "waiting": {"message": f'Back-off pulling image "{image}"', "reason": "ImagePullBackOff"}
    }


def _pod(
    ctx: _Ctx,
    group: _Group,
    *,
    name: str,
    digest: bytes,
    labels: Mapping[str, str],
    index: int,
    created: float,
    scheduled: float | None,
    at: float,
    owner: dict[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], str, bool]:
    """A pod as the API server shows it at ``at`` (``scheduled`` None: not placed yet).

    Returns the pod, its phase and whether it is ready.
    """
    plan, ts = ctx.plan, ctx.ts
    s = plan.static
    uid = _uid(digest)
    meta: dict[str, Any] = {
        "creationTimestamp": ts(created),
        "labels": labels,
        "name": name,
        "namespace": ctx.namespace,
        "ownerReferences": [owner or ctx.owner],
        "uid": uid,
    }
    if annotations:
        meta["annotations"] = (
            {**group.annotations, **annotations} if group.annotations else annotations
        )
    elif group.annotations:
        meta["annotations"] = group.annotations
    if scheduled is None or at < scheduled:
        pending: dict[str, Any] = {"phase": "Pending", "qosClass": group.qos}
        conditions: list[dict[str, Any]] = []
        if plan.preempted_by is not None and plan.preempted_at == plan.start:
            # Waiting again since the scheduler evicted it: its mark, as on the evicted pods.
            conditions.append(
                {
                    "lastProbeTime": None,
                    "lastTransitionTime": ts(plan.start),
                    "message": plan.preempted_by,
                    "reason": PREEMPTION_REASON,
                    "status": "True",
                    "type": "DisruptionTarget",
                }
            )
        if plan.unschedulable is not None and at >= plan.arrival:
            conditions.append(
                {
                    "lastProbeTime": None,
                    "lastTransitionTime": ts(plan.arrival),
                    "message": plan.unschedulable,
                    "reason": "Unschedulable",
                    "status": "False",
                    "type": "PodScheduled",
                }
            )
        if conditions:
            pending["conditions"] = conditions
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": group.spec}
        pod["status"] = pending
        return pod, "Pending", False

    node = plan.nodes[index] if index < len(plan.nodes) else 0
    host_ip = f"10.0.{node // 250}.{node % 250 + 2}"
    container_id = "containerd://" + digest.hex() * 2
    ready_at = scheduled + s.start_seconds
    end = ready_at + s.run_seconds
    outcome = s.outcome
    finite = _finite(s.kind)
    restarts, last_state, not_ready = 0, _EMPTY, group.unready
    state: Mapping[str, Any] | None  # None: per image, an image pull error

    if at < ready_at or outcome == "image-pull-error":
        phase, ready, started, since = "Pending", False, False, scheduled
        state = {"waiting": {"reason": "ContainerCreating"}} if at < ready_at else None
    elif outcome == "crash-loop" or (outcome == "fail" and group.restarts):
        first, again = _tries(outcome, s.run_seconds)
        restarts, ready, tried, last_end = _crash_clock(at - ready_at, first, again)
        phase, started = "Running", ready
        if restarts:
            last_try = first if restarts == 1 else again
            last_state = {
                "terminated": {
                    "containerID": container_id,
                    "exitCode": s.exit_code,
                    "finishedAt": ts(ready_at + last_end),
                    "reason": "Error",
                    "startedAt": ts(ready_at + last_end - last_try),
                }
            }
        if ready:
            state = {"running": {"startedAt": ts(ready_at + tried)}}
            since = ready_at + tried
        else:
            backoff = int(_backoff(restarts))
            state = {
                "waiting": {
                    "message": f"back-off {backoff // 60}m{backoff % 60}s restarting failed "
                    f"container={group.containers[0][0] if group.containers else 'main'} "
                    f"pod={name}_{ctx.namespace}({uid})",
                    "reason": "CrashLoopBackOff",
                }
            }
            since = ready_at + last_end
    elif finite and at >= end:
        failed = outcome == "fail"
        phase, ready, started, since = ("Failed" if failed else "Succeeded"), False, False, end
        not_ready = ("PodFailed" if failed else "PodCompleted", "")
        state = {
            "terminated": {
                "containerID": container_id,
                "exitCode": s.exit_code if failed else 0,
                "finishedAt": ts(end),
                "reason": "Error" if failed else "Completed",
                "startedAt": ts(ready_at),
            }
        }
    else:
        phase, ready, started, since = "Running", True, True, ready_at
        state = {"running": {"startedAt": ts(ready_at)}}

    created_containers = phase != "Pending"
    statuses = []
    for cname, image, image_id in group.containers:
        cs: dict[str, Any] = {
            "image": image,
            "imageID": image_id if created_containers else "",
            "lastState": last_state,
            "name": cname,
            "ready": ready,
            "restartCount": restarts,
            "started": started,
            "state": state or _pull_error(image, at - ready_at),
        }
        if created_containers:
            cs["containerID"] = container_id
        statuses.append(cs)
    status: dict[str, Any] = {
        "conditions": _pod_conditions(ts, scheduled, ready, since, not_ready),
        "containerStatuses": statuses,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "phase": phase,
        "qosClass": group.qos,
        "startTime": ts(scheduled),
    }
    if created_containers:
        pod_ip = f"10.244.{node % 250}.{digest[0] % 250 + 2}"
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {**group.spec, "nodeName": ctx.cluster.node_name(node)},
        "status": status,
    }
    return pod, phase, ready


def _object(obj: Mapping[str, Any], plan: _Plan, ts: Callable[[float], str]) -> dict[str, Any]:
    """The manifest with what the API server adds to its metadata on create."""
    meta = _m(obj.get("metadata"))
    extra: dict[str, Any] = {}
    if "uid" not in meta:
        extra["uid"] = _uid(_digest(plan.key, str(obj.get("kind")), str(meta.get("name"))))
    if "creationTimestamp" not in meta:
        extra["creationTimestamp"] = ts(plan.applied)
    if "generation" not in meta:
        extra["generation"] = 1
    return {**obj, "metadata": {**meta, **extra}}  # a metadata of its own, even if unchanged


def _owner(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = _m(obj.get("metadata"))
    return {
        "apiVersion": obj.get("apiVersion"),
        "blockOwnerDeletion": True,
        "controller": True,
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }


def _terminating(plan: _Plan, timing: Timing, now: float) -> bool:
    return (
        plan.static.stopped
        and plan.stopped_at is not None
        and plan.stopped_at >= plan.start
        and now < plan.stopped_at + timing.terminate_seconds
    )


def _pods_at(ctx: _Ctx, stopping: bool) -> tuple[float | None, float]:
    """(when the pods were scheduled, the moment to show them): ``now``, or the stop's."""
    plan = ctx.plan
    if stopping and plan.stopped_at is not None:
        return plan.scheduled, plan.stopped_at
    return plan.scheduled, ctx.now


def _mark_deleted(pods: list[dict[str, Any]], at: float, ts: Callable[[float], str]) -> None:
    for pod in pods:
        pod["metadata"]["deletionTimestamp"] = ts(at + _GRACE)
        pod["metadata"]["deletionGracePeriodSeconds"] = _GRACE


def _cond(
    ts: Callable[[float], str],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    at: float,
    *,
    updated: bool = True,
) -> dict[str, Any]:
    """A controller's condition; Deployments and Kubeflow jobs also stamp ``lastUpdateTime``."""
    cond = {
        "lastTransitionTime": ts(at),
        "message": message,
        "reason": reason,
        "status": status,
        "type": ctype,
    }
    if updated:
        cond["lastUpdateTime"] = cond["lastTransitionTime"]
    return cond


def _job_cond(
    ts: Callable[[float], str],
    ctype: str,
    reason: str,
    message: str,
    at: float,
    status: str = "True",
) -> dict[str, Any]:
    stamp = ts(at)
    return {
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "message": message,
        "reason": reason,
        "status": status,
        "type": ctype,
    }


def _observe_job(ctx: _Ctx, obj: dict[str, Any]) -> list[dict[str, Any]]:
    plan, ts, now = ctx.plan, ctx.ts, ctx.now
    s = plan.static
    meta = obj["metadata"]
    name, job_uid = str(meta.get("name")), str(meta.get("uid"))
    labels = {
        **s.groups[0].labels,
        "batch.kubernetes.io/controller-uid": job_uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": job_uid,
        "job-name": name,
    }
    indexed = _m(obj.get("spec")).get("completionMode") == "Indexed"
    conditions: list[dict[str, Any]] = []
    if s.stopped:
        since = plan.stopped_at if plan.stopped_at is not None else plan.start
        conditions.append(_job_cond(ts, "Suspended", "JobSuspended", "Job suspended", since))
        pods: list[dict[str, Any]] = []
        if _terminating(plan, ctx.timing, now):
            pods = [pod for pod, _, _ in _job_pods(ctx, name, labels, indexed, True)]
            _mark_deleted(pods, since, ts)
        obj["status"] = {
            "active": 0,
            "conditions": conditions,
            "ready": 0,
            "terminating": len(pods),
            "uncountedTerminatedPods": {},
        }
        return pods

    status: dict[str, Any] = {"startTime": ts(plan.start)}
    if plan.start > plan.applied:
        conditions.append(
            _job_cond(ts, "Suspended", "JobResumed", "Job resumed", plan.start, "False")
        )
    verdict: tuple[str, float] | None = None
    scheduled = plan.scheduled
    if scheduled is not None:
        ready_at = scheduled + s.start_seconds
        done = scheduled + s.waves * (s.start_seconds + s.run_seconds)
        if s.outcome == "succeed" and now >= done:
            verdict = ("Complete", done)
        elif s.outcome == "fail" and now >= ready_at + s.run_seconds:
            verdict = ("Failed", ready_at + s.run_seconds)
        elif s.outcome == "crash-loop" and now >= scheduled + s.hold:
            verdict = ("Failed", scheduled + s.hold)
    observed = _job_pods(ctx, name, labels, indexed, False)
    if verdict is not None and s.outcome == "crash-loop":
        observed = []  # the Job controller deletes the pods it gave up on
    active = ready = succeeded = failed = 0
    for _, phase, is_ready in observed:
        if phase == "Succeeded":
            succeeded += 1
        elif phase == "Failed":
            failed += 1
        else:
            active += 1
            ready += is_ready
    if verdict is not None and verdict[0] == "Failed":
        failed = max(failed, s.groups[0].count)
    if active:
        status["active"] = active
    if failed:
        status["failed"] = failed
    if succeeded:
        status["succeeded"] = succeeded
        if indexed:
            status["completedIndexes"] = "0" if succeeded == 1 else f"0-{succeeded - 1}"
    status["ready"] = ready
    status["terminating"] = 0
    if verdict is not None:
        kind, at = verdict
        if kind == "Complete":
            text = "Reached expected number of succeeded pods"
            conditions.append(_job_cond(ts, "SuccessCriteriaMet", "CompletionsReached", text, at))
            conditions.append(_job_cond(ts, "Complete", "CompletionsReached", text, at))
            status["completionTime"] = ts(at)
        else:
            text = "Job has reached the specified backoff limit"
            conditions.append(_job_cond(ts, "FailureTarget", "BackoffLimitExceeded", text, at))
            conditions.append(_job_cond(ts, "Failed", "BackoffLimitExceeded", text, at))
    if conditions:
        status["conditions"] = conditions
    status["uncountedTerminatedPods"] = {}
    obj["status"] = status
    return [pod for pod, _, _ in observed]


def _job_pods(
    ctx: _Ctx, name: str, labels: dict[str, str], indexed: bool, stopping: bool
) -> list[tuple[dict[str, Any], str, bool]]:
    """The Job's pods: ``parallelism`` at a time, the next wave as each one succeeds."""
    plan = ctx.plan
    s = plan.static
    group = s.groups[0]
    parallelism = max(group.count, 1)
    scheduled, at = _pods_at(ctx, stopping)
    cycle = s.start_seconds + s.run_seconds
    waves = 1
    if scheduled is not None and s.outcome == "succeed" and at >= scheduled:
        waves = min(s.waves, int((at - scheduled) // cycle) + 1) if cycle > 0 else s.waves
    pods = []
    for index in range(min(s.completions, waves * group.count)):
        wave, slot = divmod(index, parallelism)
        wave_start = None if scheduled is None else scheduled + wave * cycle
        created = plan.start if wave_start is None or wave == 0 else wave_start
        digest = _digest(plan.key, name, str(index), str(created))
        pod_labels: Mapping[str, str] = labels
        annotations = None
        if indexed:
            pod_name = f"{name}-{index}-{_suffix(digest, 5, 8)}"
            pod_labels = {**labels, "batch.kubernetes.io/job-completion-index": str(index)}
            annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
        else:
            pod_name = f"{name}-{_suffix(digest, 5, 8)}"
        pod, phase, ready = _pod(
            ctx,
            group,
            name=pod_name,
            digest=digest,
            labels=pod_labels,
            index=slot,
            created=created,
            scheduled=wave_start,
            at=at,
            annotations=annotations,
        )
        if not stopping or phase not in ("Succeeded", "Failed"):
            pods.append((pod, phase, ready))
    return pods


_JOB_ROLE = "training.kubeflow.org/job-role"


@dataclass(frozen=True, slots=True)
class _OperatorWords:
    """What the operators write in a job's conditions (training-operator v1.9, mpi-operator
    v0.8): some name the job with its namespace, some without."""

    kind: str
    name: str
    namespace: str
    roles: set[str]

    @property
    def _full(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def _short(self) -> str:
        return self._full if self.kind == "MPIJob" else f"{self.kind} {self.name}"

    @property
    def _with_master(self) -> bool:  # the PyTorch controller's own words for a job with one
        return self.kind == "PyTorchJob" and "Master" in self.roles

    @property
    def created(self) -> str:
        return f"{self._short} is created."

    @property
    def running(self) -> str:
        return f"{self._short if self._with_master else self._full} is running."

    @property
    def succeeded(self) -> str:
        if self._with_master:
            return f"{self._short} is successfully completed."
        return f"{self._full} successfully completed."

    @property
    def suspended(self) -> str:  # the Running condition's
        return f"{self._short} is suspended."

    @property
    def suspension(self) -> str:  # the Suspended condition's
        return "MPIJob suspended" if self.kind == "MPIJob" else self.suspended

    @property
    def resumed(self) -> str:
        return "MPIJob resumed" if self.kind == "MPIJob" else f"{self._short} is resumed."

    @property
    def backoff_limit(self) -> str:
        return f"Job {self.name} has failed because it has reached the specified backoff limit"

    def replicas_failed(self, count: int, role: str) -> str:
        if self.kind == "PyTorchJob":
            return f"{self._short} is failed because {count} {role} replica(s) failed."
        return f"{self._full} has failed because {count} {role} replica(s) failed."


def _observe_kubeflow(ctx: _Ctx, obj: dict[str, Any]) -> list[dict[str, Any]]:
    plan, ts, now = ctx.plan, ctx.ts, ctx.now
    s = plan.static
    kind = s.kind
    name = str(obj["metadata"].get("name"))
    words = _OperatorWords(kind, name, ctx.namespace, {g.role for g in s.groups})
    operator = (kinds.named(kind) or kinds.MPIJOB).controller or ""
    stopping = _terminating(plan, ctx.timing, now)
    scheduled, at = _pods_at(ctx, stopping)
    conditions = [_cond(ts, "Created", "True", f"{kind}Created", words.created, plan.applied)]
    replica_statuses: dict[str, dict[str, Any]] = {}
    pods: list[dict[str, Any]] = []
    phases: list[str] = []
    index = 0
    for group in s.groups:
        rtype = group.role.lower()
        counts = {"active": 0, "succeeded": 0, "failed": 0}
        for i in range(group.count if not s.stopped or stopping else 0):
            labels = {
                **group.labels,
                "training.kubeflow.org/job-name": name,
                "training.kubeflow.org/operator-name": operator,
                "training.kubeflow.org/replica-index": str(i),
                "training.kubeflow.org/replica-type": rtype,
            }
            if rtype in ("master", "launcher", "chief"):
                labels[_JOB_ROLE] = rtype
            digest = _digest(plan.key, name, rtype, str(i), str(plan.start))
            owner = None
            if kind == "MPIJob" and group.role == "Launcher":
                # The MPI operator runs its launcher as a batch Job, which owns the pod.
                pod_name = f"{name}-launcher-{_suffix(digest, 5, 8)}"
                owner = {
                    **ctx.owner,
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": f"{name}-launcher",
                    "uid": _uid(_digest(plan.key, "Job", f"{name}-launcher")),
                }
            else:
                pod_name = f"{name}-{rtype}-{i}"
            pod, phase, _ = _pod(
                ctx,
                group,
                name=pod_name,
                digest=digest,
                labels=labels,
                index=index,
                created=plan.start,
                scheduled=scheduled,
                at=at,
                owner=owner,
            )
            index += 1
            pods.append(pod)
            phases.append(phase)
            if phase == "Running":
                counts["active"] += 1
            elif phase == "Succeeded":
                counts["succeeded"] += 1
            elif phase == "Failed":
                counts["failed"] += 1
        entry: dict[str, Any] = {k: v for k, v in counts.items() if v}
        if not s.stopped:
            entry["selector"] = (
                f"training.kubeflow.org/job-name={name},"
                f"training.kubeflow.org/operator-name={operator},"
                f"training.kubeflow.org/replica-type={rtype}"
            )
        replica_statuses[group.role] = entry

    status: dict[str, Any] = {"replicaStatuses": replica_statuses, "startTime": ts(plan.start)}
    if s.stopped:
        since = plan.stopped_at if plan.stopped_at is not None else plan.start
        reason = f"{kind}Suspended"
        conditions.append(_cond(ts, "Running", "False", reason, words.suspended, since))
        conditions.append(_cond(ts, "Suspended", "True", reason, words.suspension, since))
        if stopping:
            _mark_deleted(pods, since, ts)
        obj["status"] = {"conditions": conditions, "replicaStatuses": replica_statuses}
        return pods
    if plan.start > plan.applied:
        conditions.append(
            _cond(ts, "Suspended", "False", f"{kind}Resumed", words.resumed, plan.start)
        )
    if scheduled is not None and phases and "Pending" not in phases:
        ready_at = scheduled + s.start_seconds
        running = _cond(ts, "Running", "True", f"{kind}Running", words.running, ready_at)
        conditions.append(running)
        end: float | None = None
        if s.outcome == "succeed" and all(p == "Succeeded" for p in phases):
            end = ready_at + s.run_seconds
            succeeded = _cond(ts, "Succeeded", "True", f"{kind}Succeeded", words.succeeded, end)
            conditions.append(succeeded)
        elif s.outcome in ("fail", "crash-loop") and now >= scheduled + s.hold:
            end = scheduled + s.hold
            if kind == "MPIJob":
                # Its launcher Job gave up (the Job controller removed its pod); the workers
                # stay, as cleanPodPolicy None (the default) leaves them.
                reason, text = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                pods = [p for p in pods if p["metadata"]["labels"].get(_JOB_ROLE) != "launcher"]
            elif "Failed" in phases:  # a replica that does not restart failed: its pods stay
                down = next(g for g in s.groups if not g.restarts)
                reason, text = f"{kind}Failed", words.replicas_failed(down.count, down.role)
            else:
                reason, text = f"{kind}Failed", words.backoff_limit
                pods = []  # the operator deletes the pods of a job it gave up on
            conditions.append(_cond(ts, "Failed", "True", reason, text, end))
        if end is not None:
            running["status"] = "False"  # the operator turns Running off when the job ends
            status["completionTime"] = ts(end)
    status["conditions"] = conditions
    obj["status"] = status
    return pods


def _observe_replicated(ctx: _Ctx, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """StatefulSet or Deployment: pods that run until stopped."""
    plan, ts = ctx.plan, ctx.ts
    s = plan.static
    group = s.groups[0]
    name = str(obj["metadata"].get("name"))
    stateful = s.kind == "StatefulSet"
    template_hash = _suffix(_digest(plan.key, name, "template"), 10)
    stopping = _terminating(plan, ctx.timing, ctx.now)
    scheduled, at = _pods_at(ctx, stopping)
    count = (s.stopped_pods if stopping else 0) if s.stopped else group.count
    pods: list[dict[str, Any]] = []
    ready = 0
    rs = f"{name}-{template_hash}"
    rs_owner = {
        **ctx.owner,
        "kind": "ReplicaSet",
        "name": rs,
        "uid": _uid(_digest(plan.key, "ReplicaSet", rs)),
    }
    for i in range(count):
        digest = _digest(plan.key, name, str(i), str(plan.start))
        if stateful:
            pod_name = f"{name}-{i}"
            labels = {
                **group.labels,
                "apps.kubernetes.io/pod-index": str(i),
                "controller-revision-hash": rs,
                "statefulset.kubernetes.io/pod-name": pod_name,
            }
        else:
            pod_name = f"{rs}-{_suffix(digest, 5, 8)}"
            labels = {**group.labels, "pod-template-hash": template_hash}
        pod, _, is_ready = _pod(
            ctx,
            group,
            name=pod_name,
            digest=digest,
            labels=labels,
            index=i,
            created=plan.start,
            scheduled=scheduled,
            at=at,
            owner=None if stateful else rs_owner,
        )
        ready += is_ready and not stopping
        pods.append(pod)
    if stopping:
        assert plan.stopped_at is not None
        _mark_deleted(pods, plan.stopped_at, ts)
    if stateful:
        status: dict[str, Any] = {
            "availableReplicas": ready,
            "collisionCount": 0,
            "currentReplicas": len(pods),
            "currentRevision": rs,
            "observedGeneration": 1,
            "replicas": len(pods),
            "updateRevision": rs,
            "updatedReplicas": len(pods),
        }
        if ready:
            status["readyReplicas"] = ready
    else:
        status = _deployment_status(ctx, rs, len(pods), ready)
    obj["status"] = status
    return pods


def _deployment_status(ctx: _Ctx, rs: str, created: int, ready: int) -> dict[str, Any]:
    plan, ts = ctx.plan, ctx.ts
    s = plan.static
    wanted = 0 if s.stopped else s.groups[0].count
    rs_text = f'ReplicaSet "{rs}"'
    since = plan.start
    if plan.scheduled is not None and ready:
        since = plan.scheduled + s.start_seconds
    if ready >= wanted - wanted // 4:  # the default maxUnavailable of 25%
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        available = (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    deadline = plan.start + _progress_deadline(s)
    if ready >= wanted:
        progress = ("True", "NewReplicaSetAvailable", f"{rs_text} has successfully progressed.")
    elif ctx.now >= deadline:
        progress = ("False", "ProgressDeadlineExceeded", f"{rs_text} has timed out progressing.")
        since = deadline
    else:
        progress = ("True", "ReplicaSetUpdated", f"{rs_text} is progressing.")
    status: dict[str, Any] = {
        "conditions": [
            _cond(ts, "Available", *available, since),
            _cond(ts, "Progressing", *progress, since),
        ],
        "observedGeneration": 1,
    }
    if created:
        status["replicas"] = created
        status["updatedReplicas"] = created
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    if created > ready:
        status["unavailableReplicas"] = created - ready
    return status


def _observe_hpa(ctx: _Ctx, obj: dict[str, Any]) -> None:
    plan, ts = ctx.plan, ctx.ts
    current = 0 if plan.static.stopped or not plan.static.groups else plan.static.groups[0].count
    if current:
        active = (
            "True",
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from cpu resource "
            "utilization (percentage of request)",
        )
    else:
        active = (
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        )
    able = ("True", "ReadyForNewScale", "recommended size matches current size")
    limited = ("False", "DesiredWithinRange", "the desired count is within the acceptable range")
    obj["status"] = {
        "conditions": [
            _cond(ts, "AbleToScale", *able, plan.start, updated=False),
            _cond(ts, "ScalingActive", *active, plan.start, updated=False),
            _cond(ts, "ScalingLimited", *limited, plan.start, updated=False),
        ],
        "currentReplicas": current,
        "desiredReplicas": current,
    }


def _observe_service(plan: _Plan, obj: dict[str, Any]) -> None:
    spec = _m(obj.get("spec"))
    if "clusterIP" not in spec:  # the API server allocates one (headless ones say "None")
        digest = _digest(plan.key, "Service", str(obj["metadata"].get("name")))
        ip = f"10.96.{digest[0]}.{digest[1] % 254 + 1}"
        obj["spec"] = spec = {**spec, "clusterIP": ip, "clusterIPs": [ip]}
    service_type = spec.get("type")
    if service_type in ("NodePort", "LoadBalancer"):
        # The API server allocates each port a node port from 30000-32767.
        ports = []
        for port in spec.get("ports") or ():
            if "nodePort" not in port:
                digest = _digest(plan.key, "nodePort", str(port.get("name") or port.get("port")))
                port = {**port, "nodePort": 30000 + int.from_bytes(digest[:2]) % 2768}
            ports.append(port)
        obj["spec"] = {**spec, "ports": ports}
    balancer: dict[str, Any] = {}
    if service_type == "LoadBalancer":  # the cloud's controller assigns an address
        digest = _digest(plan.key, "LoadBalancer", str(obj["metadata"].get("name")))
        balancer["ingress"] = [{"ip": f"203.0.113.{digest[0] % 254 + 1}", "ipMode": "VIP"}]
    obj["status"] = {"loadBalancer": balancer}


def _observe(
    plan: _Plan, cluster: ClusterShape, timing: Timing, now: float, ts: Callable[[float], str]
) -> SimResult:
    s = plan.static
    objects = [_object(m, plan, ts) for m in s.manifests]
    pods: list[dict[str, Any]] = []
    primary = next((o for o in objects if o.get("kind") == s.kind), None) if s.kind else None
    if primary is not None:
        ctx = _Ctx(
            plan=plan,
            cluster=cluster,
            timing=timing,
            now=now,
            ts=ts,
            namespace=str(primary["metadata"].get("namespace", "default")),
            owner=_owner(primary),
        )
        if s.kind == "Job":
            pods = _observe_job(ctx, primary)
        elif _kubeflow(s.kind):
            pods = _observe_kubeflow(ctx, primary)
        else:
            pods = _observe_replicated(ctx, primary)
        for obj in objects:
            if obj.get("kind") == "HorizontalPodAutoscaler":
                _observe_hpa(ctx, obj)
    for obj in objects:
        if obj.get("kind") == "Service":
            _observe_service(plan, obj)
    placed = plan.scheduled if plan.scheduled is not None else plan.held_from
    scheduled = None if placed is None else datetime.fromtimestamp(placed, UTC)
    preempted = (
        None if plan.preempted_at is None else datetime.fromtimestamp(plan.preempted_at, UTC)
    )
    return SimResult(
        key=plan.key,
        objects=objects,
        pods=pods,
        scheduled_at=scheduled,
        preempted_at=preempted,
        preempted_by=plan.preempted_by,
    )


# --- entry points --------------------------------------------------------------------------------


def simulate(
    *,
    workloads: Sequence[SimInput],
    cluster: ClusterShape,
    now: datetime,
    timing: Timing = Timing(),
    cache: SimCache | None = None,
    quotas: Mapping[str, Quota] | None = None,
) -> list[SimResult]:
    """Every workload's observed objects and pods at ``now``, in the order given.

    All workloads share the cluster, so pass every active one in one call, with the quotas of
    their projects (by name; a project left out is not limited). Linear in the number of pods,
    apart from one sort by application time.
    """
    at = _epoch(now)
    if cache is not None and cache._timing != timing:
        cache.clear()  # the durations changed: nothing carries over
    statics = cache._statics if cache is not None else {}
    waiting = cache._waiting if cache is not None else {}
    plans = []
    for seq, item in enumerate(workloads):
        static = statics.get(item.key)
        if static is None or static.manifests != item.manifests:
            static = _static(item.manifests, timing)
        plan = _plan(seq, item, static, timing, at)
        seen = waiting.get(item.key)
        if seen is not None and plan.fixed is None and plan.start <= seen <= at:
            plan.not_before = seen
        plans.append(plan)
    _schedule(plans, cluster, at, quotas=quotas or {}, timing=timing)

    ts = _formatter()
    if cache is None:
        return [_observe(plan, cluster, timing, at, ts) for plan in plans]
    results = []
    kept: dict[str, tuple[tuple[Any, ...], float, float, SimResult]] = {}
    for plan in plans:
        # Everything the result depends on besides the position of ``now`` on the timeline.
        signature = (
            plan.static,
            plan.applied,
            plan.start,
            plan.stopped_at,
            plan.arrival,
            plan.scheduled,
            plan.unschedulable,
            tuple(plan.nodes),
            plan.preempted_at,
            plan.preempted_by,
            plan.held_from,
        )
        entry = cache._results.get(plan.key)
        if entry is not None and entry[0] == signature and entry[1] <= at < entry[2]:
            result = entry[3]
        else:
            result = _observe(plan, cluster, timing, at, ts)
            entry = (signature, at, _next_change(plan, timing, at), result)
        kept[plan.key] = entry
        results.append(result)
    cache._results = kept
    cache._statics = {plan.key: plan.static for plan in plans}
    cache._waiting = {
        p.key: at
        for p in plans
        if p.scheduled is None and p.static.gpus and not p.static.stopped and p.arrival <= at
    }
    cache._timing = timing
    return results


def simulate_one(
    *,
    workload: SimInput,
    cluster: ClusterShape,
    now: datetime,
    timing: Timing = Timing(),
) -> SimResult:
    """One workload alone on the cluster (for dry runs and tests)."""
    return simulate(workloads=[workload], cluster=cluster, now=now, timing=timing)[0]
