"""A dry run's admission verdict: would the workload start now, wait for quota, wait for
capacity, or not start at all, and why, with the figures.

From what the reconciler last observed (each project's usage, the node pools), the projects'
quotas and the workload's rendered manifests; the rules are app.domain.scheduling's, the same
the reconciler explains waiting workloads with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from app.db import Conn
from app.domain import scheduling
from app.domain.quota import UNLIMITED, from_document
from app.domain.resources import ProjectUsage, workload_requests
from app.nodepools import repository as node_pools
from app.nodepools.repository import NodePoolRow
from app.projects import repository as projects
from app.workloads import schemas


def capacity(pools: Sequence[NodePoolRow], allowed: Sequence[str]) -> scheduling.Capacity | None:
    """The GPUs of the node pools a workload may use (all of them when it names none)."""
    usable = [p for p in pools if not allowed or p.name in allowed]
    if not usable:
        return None
    zero = Decimal(0)

    def gpu(doc: Mapping[str, Any]) -> Decimal:
        return Decimal(str(doc.get("gpu", "0")))

    return scheduling.Capacity(
        total=sum((gpu(p.allocatable) for p in usable), zero),
        largest_node=max(p.largest_node for p in usable),
        free=sum((max(gpu(p.allocatable) - gpu(p.allocated), zero) for p in usable), zero),
        largest_free=max(p.largest_free for p in usable),
    )


async def verdict(
    conn: Conn,
    *,
    project: str,
    workload_type: str,
    spec: Mapping[str, Any],
    manifests: Sequence[Mapping[str, Any]],
) -> schemas.Admission:
    request, largest = workload_requests(manifests)
    priority = scheduling.priority(spec.get("priorityClass"), workload_type)
    preemptible = scheduling.preemptible(spec.get("preemptibility"), priority)
    rows = await projects.quotas_and_usage(conn)
    quotas = {name: from_document(doc).gpu for name, doc, _ in rows}
    usage = {name: ProjectUsage.from_dict(used) for name, _, used in rows}
    room = capacity(await node_pools.all_pools(conn), spec.get("nodePools") or [])
    if room is not None:
        # What other projects borrowed over their quota goes back to one within its own.
        borrowed = sum(
            (
                max(usage[name].allocated.gpu - (q.deserved or Decimal(0)), Decimal(0))
                for name, q in quotas.items()
                if name != project and q.deserved is not None
            ),
            Decimal(0),
        )
        room = replace(room, reclaimable=borrowed)
    found = scheduling.verdict(
        project=project,
        request=request.gpu,
        largest_pod=largest,
        is_preemptible=preemptible,
        quota=quotas.get(project, UNLIMITED),
        used=usage.get(project, ProjectUsage()).allocated.gpu,
        capacity=room,
    )
    return schemas.Admission(
        verdict=found.outcome,
        reason=found.reason,
        message=found.message,
        gpus=request.gpu,
        preemptible=preemptible,
    )
