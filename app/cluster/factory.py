"""Choose the cluster backend from the settings."""

from __future__ import annotations

from app.cluster.backend import ClusterBackend
from app.config import Settings
from app.db import BlockingDatabase


def make_backend(settings: Settings, db: BlockingDatabase) -> ClusterBackend:
    if settings.cluster == "kubernetes":
        from app.cluster.kubernetes import KubernetesBackend

        return KubernetesBackend.from_environment(
            create_namespaces=settings.kube_create_namespaces,
            qps=settings.kube_qps,
            burst=settings.kube_burst,
            watch_seconds=settings.kube_watch_seconds,
        )
    from app.cluster.simulated import SimulatedBackend
    from app.cluster.simulation import Timing, parse_nodes

    return SimulatedBackend(
        db,
        cluster=parse_nodes(settings.sim_nodes),
        timing=Timing(
            start_seconds=settings.sim_start_seconds, run_seconds=settings.sim_run_seconds
        ),
    )
