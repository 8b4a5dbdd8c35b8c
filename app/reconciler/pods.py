"""A workload's pods as a researcher reads them (``GET /workloads/{id}/pods``): pure, no I/O.

:func:`pod_views` turns the pods observed in the cluster (dicts as the API server returns them)
into ``{name, role, node, phase, ready, restarts, startTime, gpus, containers}``, main role
first; :func:`kept_views` decides what a workload shows once its pods are gone (the final
states of a finished workload outlive the pods).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.domain import kinds
from app.domain.labels import GPU_RESOURCE, KAI_GPU_FRACTION_ANNOTATION, ROLE_LABEL
from app.domain.phases import FINAL_PHASES

PodView = dict[str, Any]

# The Kubeflow operators' own role labels, for pods of objects rendered before Runplane labelled
# roles (and for the MPI operator, which labels its pods itself).
_KUBEFLOW_ROLE_LABELS = ("training.kubeflow.org/job-role", "training.kubeflow.org/replica-type")
# Roles in the order a user looks for them: the pod that drives the others first.
ROLE_ORDER: tuple[str, ...] = ("master", "chief", "launcher", "worker", "ps", "evaluator")
_OWNER_ROLE = {"Job": "worker", "StatefulSet": "replica", "Deployment": "replica"}
_REPLICA_SET = "ReplicaSet"  # a Deployment's pods are owned by its ReplicaSet


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def role_of(pod: Mapping[str, Any]) -> str:
    """``master``, ``worker``, ``launcher``, ``replica``...: what the pod is to its workload."""
    labels = _mapping(_mapping(pod.get("metadata")).get("labels"))
    for key in (ROLE_LABEL, *_KUBEFLOW_ROLE_LABELS):
        value = labels.get(key)
        if value:
            return str(value).lower()
    for owner in _mapping(pod.get("metadata")).get("ownerReferences") or ():
        kind = str(_mapping(owner).get("kind"))
        if kind == _REPLICA_SET:
            return "replica"
        if kind in _OWNER_ROLE:
            return _OWNER_ROLE[kind]
        found = kinds.named(kind)
        if found is not None and found.replica_specs is not None:
            return "worker"
    return "replica"


def _gpus(pod: Mapping[str, Any]) -> float:
    """GPUs the pod holds (or asks for, until it is placed): whole devices from the containers'
    ``nvidia.com/gpu`` limits, or KAI-Scheduler's ``gpu-fraction`` annotation."""
    meta = _mapping(pod.get("metadata"))
    fraction = _mapping(meta.get("annotations")).get(KAI_GPU_FRACTION_ANNOTATION)
    if fraction is not None:
        try:
            return float(fraction)
        except ValueError:
            pass
    total = 0.0
    for container in _mapping(pod.get("spec")).get("containers") or ():
        limits = _mapping(_mapping(_mapping(container).get("resources")).get("limits"))
        try:
            total += float(limits.get(GPU_RESOURCE) or 0)
        except (TypeError, ValueError):
            continue
    return total


def _state(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """One container state (``waiting``, ``running`` or ``terminated``) with its details."""
    for name in ("terminated", "waiting", "running"):
        detail = state.get(name)
        if isinstance(detail, Mapping):
            out: dict[str, Any] = {"state": name}
            for key in ("reason", "message", "exitCode", "signal", "startedAt", "finishedAt"):
                if detail.get(key) is not None:
                    out[key] = detail[key]
            return out
    return None


def _container(status: Mapping[str, Any]) -> dict[str, Any]:
    state = _state(_mapping(status.get("state"))) or {"state": "waiting"}
    view: dict[str, Any] = {
        "name": str(status.get("name") or ""),
        "image": str(status.get("image") or ""),
        "ready": status.get("ready") is True,
        "restarts": int(status.get("restartCount") or 0),
        **state,
    }
    last = _state(_mapping(status.get("lastState")))
    if last is not None:
        view["lastState"] = last
    return view


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta, spec, status = (_mapping(pod.get(k)) for k in ("metadata", "spec", "status"))
    by_name = {
        str(cs.get("name")): cs
        for cs in status.get("containerStatuses") or ()
        if isinstance(cs, Mapping)
    }
    containers = []
    for container in spec.get("containers") or ():
        name = str(_mapping(container).get("name") or "")
        found = by_name.pop(name, None)
        if found is not None:
            containers.append(_container(found))
        else:  # not created yet: the kubelet reports nothing about it
            containers.append(
                {
                    "name": name,
                    "image": str(_mapping(container).get("image") or ""),
                    "ready": False,
                    "restarts": 0,
                    "state": "waiting",
                }
            )
    containers.extend(_container(cs) for cs in by_name.values())
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or () if isinstance(c, Mapping)
    }
    ready = _mapping(conditions.get("Ready")).get("status") == "True"
    view: PodView = {
        "name": str(meta.get("name") or ""),
        "role": role_of(pod),
        "node": spec.get("nodeName") or None,
        "phase": str(status.get("phase") or "Pending"),
        "ready": ready,
        "restarts": sum(c["restarts"] for c in containers),
        "startTime": status.get("startTime"),
        "gpus": _gpus(pod),
        "containers": containers,
    }
    reason, message = status.get("reason"), status.get("message")
    scheduled = _mapping(conditions.get("PodScheduled"))
    if not reason and scheduled.get("status") == "False":
        reason, message = scheduled.get("reason"), scheduled.get("message")
    if reason:
        view["reason"] = str(reason)
    if message:
        view["message"] = str(message)
    return view


def _order(view: PodView) -> tuple[int, str]:
    role = view["role"]
    rank = ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)
    return rank, view["name"]


def pod_views(pods: Sequence[Mapping[str, Any]]) -> list[PodView]:
    """Every pod, the driving role first (master, chief, launcher), then by name."""
    return sorted((pod_view(p) for p in pods), key=_order)


def kept_views(*, previous: list[PodView], observed: list[PodView], phase: str) -> list[PodView]:
    """What the workload shows: the pods observed, except that a finished workload whose pods
    were cleaned up (``ttlSecondsAfterFinished``, a deletion) keeps their final states."""
    if not observed and previous and phase in FINAL_PHASES:
        return previous
    return observed


def main_pod(views: Sequence[PodView]) -> PodView | None:
    """The pod a log request reads when it names none: the first of the driving role."""
    return min(views, key=_order) if views else None
