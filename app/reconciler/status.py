"""Workload status from the objects observed in the cluster (SPEC §5): pure, no I/O.

:func:`derive_status` maps a workload's observed Kubernetes objects and pods (dicts as the API
server returns them) to ``{phase, phaseMessage, conditions, pods}``; :func:`status_changed` tells
the reconciler whether the result is worth a database write.

How the phase is chosen, in order:

1. ``desiredPhase: Deleted``: ``Deleting`` while any object or pod remains, then ``Deleted``.
2. Nothing applied yet: ``Creating``, saying why when the cluster is unreachable (``Stopped`` if
   stopped before it was ever applied).
3. The cluster could not be read this time (``cluster_error``): ``Unknown``.
4. The workload object (Job, StatefulSet, Deployment, PyTorchJob, TFJob, MPIJob) is missing:
   ``Unknown``, except that a finished workload keeps its phase once its objects are cleaned up
   (``ttlSecondsAfterFinished``).
5. The object says it finished (Job ``Complete``/``Failed``, Kubeflow ``Succeeded``/``Failed``):
   ``Completed``/``Failed`` with the controller's reason. A workload that finished (including one
   the pending timeout failed) stays so while it is meant to run; stopping and resuming it starts
   it afresh.
6. ``desiredPhase: Stopped``: ``Stopping`` until the object is in its stopped form (``suspend`` or
   0 replicas) and no live pod is left, then ``Stopped``.
7. Running: the pods decide. A pod stuck on its image or configuration (``ErrImagePull``,
   ``ImagePullBackOff``, ``InvalidImageName``, ``ErrImageNeverPull``,
   ``CreateContainerConfigError``, ``CreateContainerError``) shows in the message at once and makes
   the workload ``Failed`` once stuck longer than ``pending_timeout`` (counted from the pod's
   scheduling) while the workload is below its size; ``CrashLoopBackOff``, a container that
   crashed within :data:`RECENT_CRASH`, or a Kubeflow ``Restarting`` condition is ``Degraded``; a
   pod the scheduler rejected is ``Pending`` with the scheduler's words; a suspended Job or
   Kubeflow job waits in its queue (``Pending``); scheduled pods not yet ready are
   ``Initializing``; all wanted pods ready is ``Running`` (the wanted size is the spec's, an
   autoscaler's ``minReplicas``, an elastic job's ``minReplicas``, or a Job's remaining
   completions; a Kubeflow job's pods that succeeded are done, not missing); fewer after having
   run is ``Degraded``. While coming back from a stop, what would be ``Pending``/``Initializing``
   is ``Resuming``. Whether a Job or Kubeflow job is stopped is its spec's ``suspend``: its
   ``Suspended`` condition lags behind a resume.

Messages hold no clock-dependent text, so that an unchanged cluster gives an unchanged status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from app.domain import kinds
from app.domain.labels import KUEUE_QUEUE_LABEL
from app.domain.phases import PHASES, DesiredPhase, Finished, Phase

ConditionStatus = Literal["True", "False", "Unknown"]

# Waiting reasons that do not go away by themselves: the workload must say so at once, and give
# up after the pending timeout instead of sitting in Initializing forever.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_EXPECTED_KIND = {
    "interactive": "StatefulSet",
    "training": "Job",
    "distributed": "PyTorchJob, TFJob, MPIJob or Job",
    "inference": "Deployment",
}
# A container that exited with an error this recently and runs again is still crash-looping:
# between its back-offs it runs for a moment, and the workload should not flap to Running.
RECENT_CRASH = timedelta(minutes=10)
_TERMINAL: frozenset[str] = frozenset({"Completed", "Failed"})
_FROM_STOP: frozenset[str] = frozenset({"Stopped", "Stopping", "Resuming"})


# --- the result ----------------------------------------------------------------------------------

_EPOCH = "1970-01-01T00:00:00Z"  # a stored condition without a time: long ago


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the Kubernetes API writes timestamps."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """A Kubernetes timestamp (``2024-05-01T10:00:00Z``) as an aware datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Condition:
    """One workload condition, shaped like a Kubernetes condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(self.last_transition_time),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        return cls(
            type=str(data["type"]),
            status=cast(ConditionStatus, data.get("status", "Unknown")),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            last_transition_time=parse_time(str(data.get("lastTransitionTime") or _EPOCH)),
        )


@dataclass(frozen=True, slots=True)
class PodCounts:
    """The workload's pods by Kubernetes pod phase; ``requested`` is what its spec asks for."""

    requested: int = 0
    running: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "requested": self.requested,
            "running": self.running,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodCounts:
        return cls(**{k: int(data.get(k, 0)) for k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """What the API shows of a workload's state: ``to_dict()`` gives the camelCase fields.

    ``reason`` is a CamelCase word for why the phase is what it is (``Unschedulable``,
    ``BackoffLimitExceeded``...), for the workload's events.
    """

    phase: Phase
    message: str
    reason: str = ""
    conditions: tuple[Condition, ...] = ()
    pods: PodCounts = PodCounts()

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "phaseMessage": self.message,
            "conditions": [c.to_dict() for c in self.conditions],
            "pods": self.pods.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadStatus:
        """Read back what :meth:`to_dict` wrote (for example a stored row's status)."""
        phase = data.get("phase", "Unknown")
        return cls(
            phase=cast(Phase, phase if phase in PHASES else "Unknown"),
            message=str(data.get("phaseMessage") or ""),
            conditions=tuple(Condition.from_dict(c) for c in data.get("conditions") or ()),
            pods=PodCounts.from_dict(data.get("pods") or {}),
        )


def status_changed(old: WorkloadStatus | Mapping[str, Any] | None, new: WorkloadStatus) -> bool:
    """Whether ``new`` differs from ``old`` in anything but transition times.

    The reason is left out too: it goes with the message, and a store that keeps only the API's
    fields must not see a change on every cycle.
    """
    if old is None:
        return True
    if not isinstance(old, WorkloadStatus):
        old = WorkloadStatus.from_dict(old)
    return (
        old.phase != new.phase
        or old.message != new.message
        or old.pods != new.pods
        or _condition_keys(old.conditions) != _condition_keys(new.conditions)
    )


def _condition_keys(conditions: Iterable[Condition]) -> list[tuple[str, str, str, str]]:
    return [(c.type, c.status, c.reason, c.message) for c in conditions]


# --- what the objects say ------------------------------------------------------------------------


@dataclass(slots=True)
class _Primary:
    """What the object owning the pods says."""

    kind: str
    requested: int  # pods its spec runs when not stopped
    wanted: int  # pods that must be ready right now for the workload to be at full size
    stopped: bool  # in its stopped form: suspend, or 0 replicas
    finished: Finished | None = None
    reason: str = ""
    message: str = ""
    since: str | None = None  # lastTransitionTime of the condition that finished it
    queue: str | None = None
    suspended_message: str = ""
    restarting: str | None = None
    troubles: list[str] = field(default_factory=list)
    # A pod of it that succeeded is done, not lost: Kubeflow replicas (a Job's completions are
    # in ``wanted`` already). Their pods succeed a moment before the operator says so.
    succeeded_pods_done: bool = False


_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    # dict first: isinstance() against the Mapping ABC costs more than the rest of a lookup.
    if isinstance(value, dict) or isinstance(value, Mapping):
        return value
    return _EMPTY


def _int(value: Any, default: int) -> int:
    return value if type(value) is int else default


def _true_conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(c.get("type")): c
        for c in status.get("conditions") or ()
        if isinstance(c, dict) and c.get("status") == "True"
    }


def _job(obj: Mapping[str, Any]) -> _Primary:
    spec, status = _mapping(obj.get("spec")), _mapping(obj.get("status"))
    meta = _mapping(obj.get("metadata"))
    conds = _true_conditions(status)
    parallelism = _int(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    # The spec, not the Suspended condition, says whether it is stopped: the condition lags,
    # still True for a moment after a resume while the controller creates the pods again.
    suspended = spec.get("suspend") is True
    remaining = parallelism
    if isinstance(completions, int):
        remaining = min(parallelism, max(completions - _int(status.get("succeeded"), 0), 0))
    primary = _Primary(
        kind="Job",
        requested=parallelism,
        wanted=0 if suspended else remaining,
        stopped=suspended,
        queue=_mapping(meta.get("labels")).get(KUEUE_QUEUE_LABEL),
    )
    # Since 1.31 the Job controller first sets FailureTarget/SuccessCriteriaMet and adds
    # Failed/Complete once the pods are gone; the first is already the verdict, and its time
    # is when the workload finished.
    _finish(primary, conds, _JOB_VERDICTS)
    if suspended and "Suspended" in conds:
        primary.suspended_message = str(conds["Suspended"].get("message") or "")
    return primary


_JOB_VERDICTS: tuple[tuple[str, Finished], ...] = (
    ("FailureTarget", "Failed"),
    ("Failed", "Failed"),
    ("SuccessCriteriaMet", "Completed"),
    ("Complete", "Completed"),
)
_KUBEFLOW_VERDICTS: tuple[tuple[str, Finished], ...] = (
    ("Failed", "Failed"),
    ("Succeeded", "Completed"),
)


def _finish(
    primary: _Primary,
    conds: Mapping[str, Mapping[str, Any]],
    verdicts: tuple[tuple[str, Finished], ...],
) -> None:
    """Record the first of ``verdicts`` whose condition is True: the object says it finished."""
    for ctype, verdict in verdicts:
        cond = conds.get(ctype)
        if cond is not None:
            primary.finished = verdict
            primary.reason = str(cond.get("reason") or ctype)
            primary.message = str(cond.get("message") or "")
            primary.since = cond.get("lastTransitionTime")
            return


def _kubeflow(obj: Mapping[str, Any]) -> _Primary:
    kind = str(obj.get("kind"))
    spec, status = _mapping(obj.get("spec")), _mapping(obj.get("status"))
    meta = _mapping(obj.get("metadata"))
    replica_specs = _mapping(spec.get((kinds.named(kind) or kinds.PYTORCHJOB).replica_specs or ""))
    replicas = {rtype: _int(_mapping(rs).get("replicas"), 1) for rtype, rs in replica_specs.items()}
    requested = sum(replicas.values())
    wanted = requested
    elastic_min = _mapping(spec.get("elasticPolicy")).get("minReplicas")
    if isinstance(elastic_min, int) and "Worker" in replicas:
        # Elastic PyTorch runs at full strength with minReplicas workers.
        wanted = requested - replicas["Worker"] + min(replicas["Worker"], elastic_min)
    conds = _true_conditions(status)
    suspended = _mapping(spec.get("runPolicy")).get("suspend") is True  # as for a Job
    primary = _Primary(
        kind=kind,
        requested=requested,
        wanted=0 if suspended else wanted,
        stopped=suspended,
        queue=_mapping(meta.get("labels")).get(KUEUE_QUEUE_LABEL),
        succeeded_pods_done=True,
    )
    _finish(primary, conds, _KUBEFLOW_VERDICTS)
    if suspended and "Suspended" in conds:
        primary.suspended_message = str(conds["Suspended"].get("message") or "")
    if "Restarting" in conds:
        primary.restarting = str(conds["Restarting"].get("message") or f"{kind} is restarting")
    return primary


def _statefulset(obj: Mapping[str, Any]) -> _Primary:
    replicas = _int(_mapping(obj.get("spec")).get("replicas"), 1)
    return _Primary(
        kind="StatefulSet",
        requested=replicas,
        wanted=replicas,
        stopped=replicas == 0,
    )


def _deployment(obj: Mapping[str, Any], hpa: Mapping[str, Any] | None) -> _Primary:
    replicas = _int(_mapping(obj.get("spec")).get("replicas"), 1)
    wanted = replicas
    if hpa is not None and replicas > 0:
        # The autoscaler moves spec.replicas between its bounds; the workload is at full
        # strength at minReplicas, and below it is Degraded.
        wanted = _int(_mapping(hpa.get("spec")).get("minReplicas"), 1)
    primary = _Primary(
        kind="Deployment",
        requested=max(replicas, wanted),
        wanted=wanted,
        stopped=replicas == 0,
    )
    for cond in _mapping(obj.get("status")).get("conditions") or ():
        ctype, reason = cond.get("type"), cond.get("reason")
        if ctype == "ReplicaFailure" and cond.get("status") == "True":
            # e.g. a ResourceQuota refusing the pods: no pod will ever show up to explain it.
            primary.troubles.append(f"FailedCreate: {cond.get('message', '')}")
        elif ctype == "Progressing" and reason == "ProgressDeadlineExceeded":
            primary.troubles.append(f"ProgressDeadlineExceeded: {cond.get('message', '')}")
    return primary


def _find_primary(objects: Sequence[Mapping[str, Any]]) -> _Primary | None:
    """What the object owning the pods says: the workload's main object, the one of lowest
    ``owner_rank`` (an MPIJob's launcher is itself a Job)."""
    best: Mapping[str, Any] | None = None
    best_rank = 0
    hpa: Mapping[str, Any] | None = None
    for obj in objects:
        kind = kinds.of(obj)
        if kind is kinds.HPA:
            hpa = obj
        elif kind is not None and kind.owner_rank is not None:
            if best is None or kind.owner_rank < best_rank:
                best, best_rank = obj, kind.owner_rank
    if best is None:
        return None
    kind = best.get("kind")
    if kind == "Job":
        return _job(best)
    if kind == "StatefulSet":
        return _statefulset(best)
    if kind == "Deployment":
        return _deployment(best, hpa)
    return _kubeflow(best)


# --- what the pods say ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Stuck:
    reason: str
    text: str
    since: str | None


@dataclass(slots=True)
class _Pods:
    running: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0
    ready: int = 0
    live: int = 0  # neither Succeeded nor Failed
    unscheduled: int = 0  # no scheduling decision yet
    gated: int = 0
    unschedulable: list[str] = field(default_factory=list)
    stuck: list[_Stuck] = field(default_factory=list)
    crashing: list[str] = field(default_factory=list)
    starting: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)  # what evicted them, on waiting pods


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    init = status.get("initContainerStatuses") or []
    main = status.get("containerStatuses") or []
    return [*init, *main] if init else main


def _last_exit(cs: Mapping[str, Any]) -> str:
    term = _mapping(_mapping(cs.get("lastState")).get("terminated"))
    if not term:
        term = _mapping(_mapping(cs.get("state")).get("terminated"))
    if not term:
        return ""
    return f"; last exit code {term.get('exitCode')} ({term.get('reason', 'Error')})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _crashed_recently(cs: Mapping[str, Any], now: datetime) -> bool:
    term = _mapping(_mapping(cs.get("lastState")).get("terminated"))
    finished = term.get("finishedAt")
    return (
        bool(finished)
        and term.get("exitCode") != 0
        and now - parse_time(str(finished)) < RECENT_CRASH
    )


def _analyse_pods(pods: Sequence[Mapping[str, Any]], now: datetime) -> _Pods:
    out = _Pods()
    for pod in pods:
        meta = _mapping(pod.get("metadata"))
        status = _mapping(pod.get("status"))
        name = meta.get("name", "?")
        phase = status.get("phase") or "Pending"
        if phase == "Succeeded":
            out.succeeded += 1
            continue
        if phase == "Failed":
            out.failed += 1
            out.failures.append(_pod_failure(name, status))
            continue
        out.live += 1
        if phase == "Running":
            out.running += 1
        else:  # Pending, or Unknown when the node stopped reporting
            out.pending += 1
        scheduled: Mapping[str, Any] | None = None
        ready = False
        for cond in status.get("conditions") or ():
            ctype = cond.get("type")
            if ctype == "PodScheduled":
                scheduled = cond
            elif ctype == "Ready":
                ready = cond.get("status") == "True"
            elif (
                ctype == "DisruptionTarget"
                and cond.get("status") == "True"
                and cond.get("reason") == PREEMPTED_BY_SCHEDULER
                and phase == "Pending"
            ):
                out.preempted.append(str(cond.get("message") or "preempted by the scheduler"))
        if phase == "Pending" and (scheduled is None or scheduled.get("status") != "True"):
            reason = scheduled.get("reason") if scheduled is not None else None
            if reason == "Unschedulable":
                out.unschedulable.append(str(scheduled.get("message") or "") if scheduled else "")
            elif reason == "SchedulingGated":
                out.gated += 1
            else:
                out.unscheduled += 1
            continue
        if ready and phase == "Running":
            out.ready += 1
        statuses = _container_statuses(status)
        if not statuses and phase == "Pending":
            out.starting.append("ContainerCreating")
        elif not ready and phase == "Running":
            # Up but failing its readiness probe; a waiting container below says more if any.
            out.starting.append("ContainersNotReady")
        for cs in statuses:
            waiting = _mapping(_mapping(cs.get("state")).get("waiting"))
            where = f"container {cs.get('name')} in pod {name}"
            if not waiting:
                if cs.get("restartCount") and _crashed_recently(cs, now):
                    out.crashing.append(_crash_text(where, cs))
                continue
            reason = str(waiting.get("reason") or "")
            if reason in STUCK_REASONS:
                since = scheduled.get("lastTransitionTime") if scheduled is not None else None
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                out.stuck.append(
                    _Stuck(
                        reason, f"{reason}: {where}{detail}", since or meta.get("creationTimestamp")
                    )
                )
            elif reason == "CrashLoopBackOff":
                out.crashing.append(_crash_text(where, cs))
            elif reason:
                out.starting.append(reason)
    return out


def _crash_text(where: str, cs: Mapping[str, Any]) -> str:
    restarts = _plural(_int(cs.get("restartCount"), 0), "time")
    return f"CrashLoopBackOff: {where} restarted {restarts}{_last_exit(cs)}"


def _pod_failure(name: Any, status: Mapping[str, Any]) -> str:
    if status.get("reason"):  # Evicted, DeadlineExceeded, ... carry the node's explanation
        return f"pod {name} failed: {status['reason']}: {status.get('message', '')}".rstrip(": ")
    for cs in _container_statuses(status):
        term = _mapping(_mapping(cs.get("state")).get("terminated"))
        if term and term.get("exitCode") != 0:
            return (
                f"pod {name} failed: container {cs.get('name')} exited with code "
                f"{term.get('exitCode')} ({term.get('reason', 'Error')})"
            )
    return f"pod {name} failed"


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Verdict:
    phase: Phase
    reason: str
    message: str
    since: str | None = None  # when the cluster says this happened, if it says


def _go_duration(value: timedelta) -> str:
    """``5m0s``, as Kubernetes prints durations."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def _summarise(items: Sequence[str]) -> str:
    distinct = list(dict.fromkeys(items))
    more = len(items) - 1
    return distinct[0] + (f" (and {more} more)" if more > 0 else "")


def _running_verdict(
    *,
    primary: _Primary,
    pods: _Pods,
    now: datetime,
    pending_timeout: timedelta,
    resuming: bool,
    was_running: bool,
    requested: int,
) -> _Verdict:
    wanted = primary.wanted
    if primary.succeeded_pods_done:
        wanted = max(wanted - pods.succeeded, 0)
    up = pods.ready
    waiting: Phase | None = "Resuming" if resuming else None

    if primary.stopped:
        if primary.queue:
            text = (
                f"waiting for admission in queue {primary.queue}: the {primary.kind} is suspended"
            )
            return _Verdict(waiting or "Pending", "Queued", text)
        if resuming:
            return _Verdict(
                "Resuming", "ResumeRequested", f"waiting for the {primary.kind} to resume"
            )
        detail = f" ({primary.suspended_message})" if primary.suspended_message else ""
        return _Verdict("Pending", "Suspended", f"the {primary.kind} is suspended{detail}")

    troubles: list[str] = []
    if pods.stuck:
        timed_out = [
            s for s in pods.stuck if s.since and now - parse_time(s.since) > pending_timeout
        ]
        if timed_out and up < wanted:
            first = timed_out[0]
            return _Verdict(
                "Failed",
                first.reason,
                f"stuck for more than {_go_duration(pending_timeout)}: "
                + _summarise([s.text for s in timed_out]),
            )
        troubles.append(_summarise([s.text for s in pods.stuck]))
    if pods.crashing:
        troubles.insert(0, _summarise(pods.crashing))
    if primary.restarting:
        troubles.insert(0, f"Restarting: {primary.restarting}")
    troubles.extend(primary.troubles)

    if wanted > 0 and up >= wanted:
        if pods.crashing or primary.restarting or pods.stuck:
            reason = (
                "Restarting"
                if primary.restarting
                else ("CrashLoopBackOff" if pods.crashing else pods.stuck[0].reason)
            )
            return _Verdict("Degraded", reason, "; ".join(troubles))
        return _Verdict("Running", "PodsReady", f"{up}/{max(requested, up)} pods ready")
    if wanted == 0:
        # Every completion is in but the Job controller has not said Complete yet.
        return _Verdict("Running", "PodsFinishing", "all pods finished; waiting for the controller")

    counts = f"{up}/{wanted} pods ready"
    if pods.crashing or primary.restarting:
        reason = "Restarting" if primary.restarting else "CrashLoopBackOff"
        # No ready count here: it flips with every restart, and so would the stored status.
        return _Verdict("Degraded", reason, "; ".join(troubles))
    # Below size with nothing crashing: Degraded if it ran and lost pods, else still coming up.
    # A Job starting its next pods after earlier ones succeeded is progress, not a loss.
    lost: Phase | None = None
    if was_running:
        lost = "Running" if primary.kind == "Job" and not pods.failures else "Degraded"
    if pods.stuck:
        phase: Phase = "Degraded" if (up > 0 or lost) else (waiting or "Initializing")
        return _Verdict(phase, pods.stuck[0].reason, "; ".join(troubles))
    if pods.failures:
        troubles.append(_summarise(pods.failures))
    if pods.unschedulable:
        text = f"Unschedulable: {_summarise(pods.unschedulable)}"
        phase = "Degraded" if (up > 0 or lost) else (waiting or "Pending")
        return _Verdict(phase, "Unschedulable", "; ".join([text, *troubles]))
    if primary.troubles and pods.live == 0:  # the controller cannot create the pods
        reason = primary.troubles[0].partition(":")[0]
        return _Verdict(lost or waiting or "Pending", reason, "; ".join(troubles))
    if pods.gated:
        text = f"waiting in the scheduler's queue: {_plural(pods.gated, 'pod')} gated"
        return _Verdict(lost or waiting or "Pending", "SchedulingGated", text)
    if pods.unscheduled:
        text = f"waiting for {_plural(pods.unscheduled, 'pod')} to be scheduled"
        return _Verdict(lost or waiting or "Pending", "Scheduling", "; ".join([text, *troubles]))
    if pods.live < wanted and not pods.starting:
        text = f"{counts}; waiting for pods to be created"
        return _Verdict(
            lost or waiting or "Pending", "PodsNotCreated", "; ".join([text, *troubles])
        )
    starting = ", ".join(dict.fromkeys(pods.starting)) or "starting containers"
    text = f"{counts}; {starting}"
    return _Verdict(lost or waiting or "Initializing", "PodsStarting", "; ".join([text, *troubles]))


def _verdict(
    *,
    workload_type: str,
    desired_phase: DesiredPhase,
    objects: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    primary: _Primary | None,
    pod_facts: _Pods,
    applied: bool,
    now: datetime,
    pending_timeout: timedelta,
    previous: WorkloadStatus | None,
    requested: int,
    cluster_error: str | None,
) -> _Verdict:
    if desired_phase == "Deleted":
        if cluster_error:
            return _Verdict(
                "Deleting", "ClusterUnreachable", f"cannot reach the cluster: {cluster_error}"
            )
        if objects or pods:
            return _Verdict(
                "Deleting",
                "Deleting",
                f"waiting for {_plural(len(objects), 'object')} and {_plural(len(pods), 'pod')} "
                "to be removed",
            )
        return _Verdict("Deleted", "Deleted", "all objects were removed from the cluster")
    if not applied and not objects and not pods:
        if cluster_error:
            return _Verdict(
                "Creating", "ClusterUnreachable", f"waiting for the cluster: {cluster_error}"
            )
        if desired_phase == "Stopped":
            return _Verdict("Stopped", "NotApplied", "stopped before it was applied to the cluster")
        return _Verdict("Creating", "NotApplied", "waiting to be applied to the cluster")
    if cluster_error:
        return _Verdict(
            "Unknown", "ClusterUnreachable", f"cannot read the cluster: {cluster_error}"
        )

    prev_phase = previous.phase if previous is not None else None
    if primary is None:
        if desired_phase == "Running" and previous is not None and prev_phase in _TERMINAL:
            return _Verdict(previous.phase, previous.reason or "ObjectsCleanedUp", previous.message)
        if desired_phase == "Stopped" and not pods:
            return _Verdict(
                "Stopped", "ObjectsMissing", "stopped; its objects are not in the cluster"
            )
        expected = _EXPECTED_KIND.get(workload_type, "workload object")
        return _Verdict("Unknown", "ObjectsMissing", f"the {expected} is missing from the cluster")

    if primary.finished is not None:
        message = f"{primary.reason}: {primary.message}" if primary.message else primary.reason
        if primary.finished == "Failed" and pod_facts.failures:
            message += f"; {_summarise(pod_facts.failures)}"
        return _Verdict(primary.finished, primary.reason, message, primary.since)
    if desired_phase == "Running" and previous is not None and prev_phase in _TERMINAL:
        # A workload the pending timeout failed stays failed; resuming it starts it afresh.
        return _Verdict(previous.phase, previous.reason or previous.phase, previous.message)

    if desired_phase == "Stopped":
        if not primary.stopped:
            return _Verdict("Stopping", "StopRequested", f"waiting for the {primary.kind} to stop")
        if pod_facts.live:
            return _Verdict(
                "Stopping",
                "PodsTerminating",
                f"waiting for {_plural(pod_facts.live, 'pod')} to terminate",
            )
        return _Verdict("Stopped", "Stopped", "stopped")

    return _running_verdict(
        primary=primary,
        pods=pod_facts,
        now=now,
        pending_timeout=pending_timeout,
        resuming=prev_phase in _FROM_STOP,
        was_running=prev_phase in ("Running", "Degraded"),
        requested=requested,
    )


# --- why it waits --------------------------------------------------------------------------------

# The reason Kubernetes' schedulers give a pod they evict to make room for another.
PREEMPTED_BY_SCHEDULER = "PreemptionByScheduler"
# Verdicts that only say the pods wait for the scheduler (or the job for its queue).
_WAITING = frozenset({"Queued", "Unschedulable", "Scheduling", "SchedulingGated"})
# Kueue's Workload conditions, shown as the workload's own.
KUEUE_CONDITIONS = ("QuotaReserved", "Admitted", "Evicted")


def _kueue_workload(objects: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((o for o in objects if kinds.of(o) is kinds.KUEUE_WORKLOAD), None)


def _kueue_says(queued: Mapping[str, Any]) -> tuple[str, str] | None:
    """Kueue's reason and words for a job it holds back (None: it does not say)."""
    conds = {
        str(c.get("type")): c
        for c in _mapping(queued.get("status")).get("conditions") or ()
        if isinstance(c, dict)
    }
    evicted = conds.get("Evicted")
    if evicted is not None and evicted.get("status") == "True":
        reason = "Preempted" if evicted.get("reason") == "Preempted" else "Evicted"
        return reason, f"Kueue: {evicted.get('message') or evicted.get('reason')}"
    reserved = conds.get("QuotaReserved")
    if reserved is not None and reserved.get("status") != "True":
        message = str(reserved.get("message") or reserved.get("reason") or "pending")
        reason = "QuotaExceeded" if "quota" in message.lower() else "WaitingInQueue"
        return reason, f"Kueue: {message}"
    admitted = conds.get("Admitted")
    if admitted is not None and admitted.get("status") != "True":
        return "WaitingInQueue", f"Kueue: {admitted.get('message') or 'waiting for admission'}"
    return None


def _why_waiting(
    verdict: _Verdict,
    pods: _Pods,
    queued: Mapping[str, Any] | None,
    waiting: tuple[str, str] | None,
) -> _Verdict:
    """A workload waiting for the scheduler or its queue, said with the reason that holds it
    back: Kueue's words where Kueue queues it; else that the scheduler evicted it (and who
    for), and the reconciler's explanation with figures (QuotaExceeded, InsufficientCapacity,
    WaitingInQueue), the scheduler's own words after them."""
    if verdict.reason not in _WAITING:
        return verdict
    if pods.preempted and pods.ready == 0:
        # Evicted, it waits again from the start: Pending, not Degraded for the pods it lost.
        note = f"Preempted: {_summarise(pods.preempted)}"
        if waiting is not None:
            note += f"; {waiting[1]}"
        return _Verdict("Pending", "Preempted", note)
    if verdict.phase not in ("Pending", "Resuming"):
        return verdict
    if queued is not None:
        said = _kueue_says(queued)
        if said is not None:
            return _Verdict(verdict.phase, said[0], said[1])
    if waiting is not None:
        # Short of capacity, the scheduler's words say where: keep them.
        capacity = pods.unschedulable and waiting[0] == "InsufficientCapacity"
        scheduler = f" (the scheduler: {verdict.message})" if capacity else ""
        return _Verdict(verdict.phase, waiting[0], waiting[1] + scheduler)
    return verdict


def _kueue_conditions(queued: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    if queued is None:
        return ()
    out = []
    for cond in _mapping(queued.get("status")).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") in KUEUE_CONDITIONS:
            out.append(Condition.from_dict(cond))
    return tuple(out)


# --- conditions ----------------------------------------------------------------------------------


def _conditions(
    *,
    verdict: _Verdict,
    objects_present: bool,
    primary: _Primary | None,
    pods: _Pods,
    now: datetime,
    previous: WorkloadStatus | None,
) -> tuple[Condition, ...]:
    """``Applied``, ``PodsScheduled``, ``PodsReady``, and ``Completed``/``Failed`` at the end."""
    phase = verdict.phase
    wanted: list[tuple[str, ConditionStatus, str, str, str | None]] = []
    if objects_present:
        wanted.append(
            ("Applied", "True", "Applied", "the workload's objects are in the cluster", None)
        )
    else:
        wanted.append(("Applied", "False", verdict.reason, verdict.message, None))
    if phase in _TERMINAL:
        wanted.append((phase, "True", verdict.reason, verdict.message, verdict.since))
    elif primary is not None and phase not in ("Deleting", "Deleted"):
        if primary.stopped or phase in ("Stopped", "Stopping"):
            wanted.append(("PodsScheduled", "False", verdict.reason, verdict.message, None))
        elif pods.unschedulable:
            text = f"Unschedulable: {_summarise(pods.unschedulable)}"
            wanted.append(("PodsScheduled", "False", "Unschedulable", text, None))
        elif pods.gated or pods.unscheduled or pods.live < primary.wanted:
            wanted.append(
                ("PodsScheduled", "False", "Scheduling", "not all pods are scheduled", None)
            )
        else:
            wanted.append(("PodsScheduled", "True", "Scheduled", "all pods are scheduled", None))
        ready: ConditionStatus = "True" if phase == "Running" else "False"
        wanted.append(("PodsReady", ready, verdict.reason, verdict.message, None))

    before = {c.type: c for c in previous.conditions} if previous is not None else {}
    out = []
    for ctype, status, reason, message, since in wanted:
        old = before.get(ctype)
        if old is not None and old.status == status:
            when = old.last_transition_time  # Kubernetes keeps the time while the status holds
        elif since:
            when = parse_time(since)
        else:
            when = now
        out.append(Condition(ctype, status, reason, message, when))
    return tuple(out)


# --- the entry point -----------------------------------------------------------------------------


def derive_status(
    *,
    workload_type: str,
    desired_phase: DesiredPhase,
    objects: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    applied: bool,
    now: datetime,
    pending_timeout: timedelta,
    previous: WorkloadStatus | None = None,
    requested_pods: int | None = None,
    cluster_error: str | None = None,
    waiting: tuple[str, str] | None = None,
) -> WorkloadStatus:
    """The workload's status from what the cluster shows; pure and deterministic.

    ``objects`` are the workload's observed objects and ``pods`` its pods, as the API server
    returns them (with ``status``). ``applied`` says whether its manifests were ever applied.
    ``previous`` is the status last derived (phases such as ``Resuming`` and a finished workload
    whose objects were cleaned up depend on it; condition times carry over from it).
    ``requested_pods`` is reported as ``pods.requested``; by default it is what the objects' spec
    asks for (0 while stopped). ``cluster_error`` says the cluster could not be read this time.
    ``waiting`` is ``(reason, message)``: why the reconciler found it waiting, with figures, from
    its project's quota and usage and the cluster's capacity (see :func:`_why_waiting`).
    """
    primary = _find_primary(objects)
    pod_facts = _analyse_pods(pods, now)
    if requested_pods is None:
        requested_pods = 0 if primary is None or primary.stopped else primary.requested
    verdict = _verdict(
        workload_type=workload_type,
        desired_phase=desired_phase,
        objects=objects,
        pods=pods,
        primary=primary,
        pod_facts=pod_facts,
        applied=applied,
        now=now,
        pending_timeout=pending_timeout,
        previous=previous,
        requested=requested_pods,
        cluster_error=cluster_error,
    )
    queued = _kueue_workload(objects)
    verdict = _why_waiting(verdict, pod_facts, queued, waiting)
    return WorkloadStatus(
        phase=verdict.phase,
        message=verdict.message,
        reason=verdict.reason,
        conditions=_conditions(
            verdict=verdict,
            objects_present=bool(objects),
            primary=primary,
            pods=pod_facts,
            now=now,
            previous=previous,
        )
        + _kueue_conditions(queued),
        pods=PodCounts(
            requested=requested_pods,
            running=pod_facts.running,
            pending=pod_facts.pending,
            succeeded=pod_facts.succeeded,
            failed=pod_facts.failed,
        ),
    )
