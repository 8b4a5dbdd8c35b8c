"""The events the simulated cluster's scheduler, kubelet and Job controller would write: pure.

:func:`cluster_events` reads a workload's simulated objects and pods (app.cluster.simulation) and
answers the core/v1 Events a real cluster shows for them (``Scheduled``, ``Pulling``, ``Started``,
``FailedScheduling``, ``Failed`` on an image pull, ``BackOff``, ``BackoffLimitExceeded``...),
with the same reasons and message shapes, so that a workload's timeline reads alike on both
backends. Deterministic: the same objects give the same events (uids included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

Manifest = dict[str, Any]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _event(
    obj: Mapping[str, Any],
    *,
    type_: str,
    reason: str,
    message: str,
    at: str | None,
    source: str,
    count: int = 1,
    last: str | None = None,
) -> Manifest:
    meta = _mapping(obj.get("metadata"))
    uid = str(meta.get("uid") or meta.get("name") or "")
    digest = hashlib.md5(f"{uid}/{reason}".encode(), usedforsecurity=False).hexdigest()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name')}.{digest[:16]}",
            "namespace": meta.get("namespace"),
            "uid": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "count": count,
        "firstTimestamp": at,
        "lastTimestamp": last or at,
        "source": {"component": source},
    }


def _pod_events(pod: Mapping[str, Any]) -> list[Manifest]:
    meta, spec, status = (_mapping(pod.get(k)) for k in ("metadata", "spec", "status"))
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or () if isinstance(c, Mapping)
    }
    scheduled = _mapping(conditions.get("PodScheduled"))
    at = scheduled.get("lastTransitionTime")
    if scheduled.get("status") == "False":
        return [
            _event(
                pod,
                type_="Warning",
                reason="FailedScheduling",
                message=str(scheduled.get("message") or ""),
                at=at,
                source="default-scheduler",
            )
        ]
    if scheduled.get("status") != "True":
        return []
    out = [
        _event(
            pod,
            type_="Normal",
            reason="Scheduled",
            message=f"Successfully assigned {meta.get('namespace')}/{meta.get('name')} to "
            f"{spec.get('nodeName')}",
            at=at,
            source="default-scheduler",
        )
    ]
    for cs in status.get("containerStatuses") or ():
        out.extend(_container_events(pod, _mapping(cs), scheduled_at=at))
    return out


def _container_events(
    pod: Mapping[str, Any], cs: Mapping[str, Any], *, scheduled_at: Any
) -> list[Manifest]:
    name, image = cs.get("name"), cs.get("image")
    state, last = _mapping(cs.get("state")), _mapping(cs.get("lastState"))
    waiting = _mapping(state.get("waiting"))
    reason = waiting.get("reason")
    kubelet = "kubelet"
    out = [
        _event(
            pod,
            type_="Normal",
            reason="Pulling",
            message=f'Pulling image "{image}"',
            at=scheduled_at,
            source=kubelet,
        )
    ]
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        out.append(
            _event(
                pod,
                type_="Warning",
                reason="Failed",
                message=f'Failed to pull image "{image}": {waiting.get("message") or reason}',
                at=scheduled_at,
                source=kubelet,
            )
        )
        if reason == "ImagePullBackOff":
            out.append(
                _event(
                    pod,
                    type_="Normal",
                    reason="BackOff",
                    message=f'Back-off pulling image "{image}"',
                    at=scheduled_at,
                    source=kubelet,
                )
            )
        return out
    run = _mapping(state.get("running") or state.get("terminated") or last.get("terminated"))
    started = run.get("startedAt")
    if started is None:
        return out
    for why, text in (
        ("Pulled", f'Successfully pulled image "{image}"'),
        ("Created", f"Created container: {name}"),
        ("Started", f"Started container {name}"),
    ):
        out.append(
            _event(pod, type_="Normal", reason=why, message=text, at=started, source=kubelet)
        )
    restarts = int(cs.get("restartCount") or 0)
    if restarts and _mapping(last.get("terminated")).get("exitCode") not in (None, 0):
        out.append(
            _event(
                pod,
                type_="Warning",
                reason="BackOff",
                message=f"Back-off restarting failed container {name} in pod "
                f"{_mapping(pod.get('metadata')).get('name')}",
                at=started,
                last=_mapping(last.get("terminated")).get("finishedAt"),
                count=restarts,
                source=kubelet,
            )
        )
    return out


def _job_events(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Manifest]:
    out = []
    for pod in pods:
        meta = _mapping(pod.get("metadata"))
        owners = [_mapping(o).get("name") for o in meta.get("ownerReferences") or ()]
        if _mapping(job.get("metadata")).get("name") in owners:
            out.append(
                _event(
                    job,
                    type_="Normal",
                    reason="SuccessfulCreate",
                    message=f"Created pod: {meta.get('name')}",
                    at=meta.get("creationTimestamp"),
                    source="job-controller",
                )
            )
    for cond in _mapping(job.get("status")).get("conditions") or ():
        cond = _mapping(cond)
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Failed":
            out.append(
                _event(
                    job,
                    type_="Warning",
                    reason=str(cond.get("reason") or "Failed"),
                    message=str(cond.get("message") or ""),
                    at=cond.get("lastTransitionTime"),
                    source="job-controller",
                )
            )
        elif cond.get("type") == "Complete":
            out.append(
                _event(
                    job,
                    type_="Normal",
                    reason="Completed",
                    message="Job completed",
                    at=cond.get("lastTransitionTime"),
                    source="job-controller",
                )
            )
    return out


def cluster_events(
    objects: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> list[Manifest]:
    """Every event of the workload's objects and pods, as a real cluster would show them."""
    out: list[Manifest] = []
    for obj in objects:
        if obj.get("kind") == "Job":
            out.extend(_job_events(obj, pods))
    for pod in pods:
        out.extend(_pod_events(pod))
    return out
