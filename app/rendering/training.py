"""Training workloads: one batch/v1 Job.

completions (default 1), parallelism, backoffLimit (default 6) and
autoDeletionTimeAfterCompletionSeconds (-> ``ttlSecondsAfterFinished``) map one to one; pods
never restart in place (``restartPolicy: Never``), the Job controller retries them. ``suspend`` is
always rendered, so that resuming (``false``) is applied: it is ``true`` when stopped, and with
Kueue, which admits a Job by unsuspending it.
"""

from __future__ import annotations

from typing import Any

from app.rendering import common
from app.rendering.common import Manifest, Problem
from app.rendering.context import RenderContext

DEFAULT_BACKOFF_LIMIT = 6


def suspended(ctx: RenderContext) -> bool:
    return ctx.stopped or ctx.scheduler == "kueue"


def render(ctx: RenderContext) -> list[Manifest]:
    spec = ctx.spec
    workload_ports = common.normalized_ports(spec)
    job: dict[str, Any] = {
        "completions": int(spec.get("completions") or 1),
    }
    if spec.get("parallelism") is not None:
        job["parallelism"] = int(spec["parallelism"])
    backoff = spec.get("backoffLimit")
    job["backoffLimit"] = int(backoff) if backoff is not None else DEFAULT_BACKOFF_LIMIT
    ttl = spec.get("autoDeletionTimeAfterCompletionSeconds")
    if ttl is not None:
        job["ttlSecondsAfterFinished"] = int(ttl)
    job["suspend"] = suspended(ctx)
    job["template"] = common.pod_template(
        ctx, spec, container_name=ctx.name, restart_policy="Never", ports=workload_ports
    )
    return [
        common.manifest(
            "batch/v1", "Job", common.object_meta(ctx, ctx.name, workload_object=True), job
        )
    ]


def check(ctx: RenderContext) -> list[Problem]:
    # Ports on a training only name container ports; no Service is rendered for them.
    return common.check_ports(common.normalized_ports(ctx.spec), services=False)
