"""Interactive workloads: a one-replica StatefulSet (0 when stopped) and Services for its ports.

``tool: jupyter`` exposes 8888 and ``tool: tensorboard`` 6006 (ClusterIP, named after the tool)
unless a port already uses that container port or name. The StatefulSet's ``serviceName`` is
``<name>``: the ClusterIP Service when ports are set. That governing Service is not headless, so
no per-pod DNS record is published; a one-replica workspace is reached through the Service, and
Kubernetes does not require the governing Service to exist or be headless.
"""

from __future__ import annotations

from typing import Any

from app.rendering import common
from app.rendering.common import Manifest, Problem
from app.rendering.context import RenderContext

TOOL_PORTS = {"jupyter": 8888, "tensorboard": 6006}


def ports(ctx: RenderContext) -> list[dict[str, Any]]:
    out = common.normalized_ports(ctx.spec)
    tool = ctx.spec.get("tool")
    if tool in TOOL_PORTS:
        number = TOOL_PORTS[tool]
        if all(p["container"] != number and p["name"] != tool for p in out):
            out.append(
                {"name": tool, "container": number, "serviceType": "ClusterIP", "external": number}
            )
    return out


def render(ctx: RenderContext) -> list[Manifest]:
    workload_ports = ports(ctx)
    template = common.pod_template(
        ctx,
        ctx.spec,
        container_name=ctx.name,
        restart_policy="Always",
        pod_queue_label=True,
        ports=workload_ports,
    )
    statefulset = common.manifest(
        "apps/v1",
        "StatefulSet",
        common.object_meta(ctx, ctx.name, workload_object=True),
        {
            "replicas": 0 if ctx.stopped else 1,
            "serviceName": common.service_name(ctx, "ClusterIP"),
            "selector": {"matchLabels": common.selector_labels(ctx)},
            "template": template,
        },
    )
    # Services first: a StatefulSet's governing Service should exist before its pods.
    return [*common.port_services(ctx, workload_ports), statefulset]


def check(ctx: RenderContext) -> list[Problem]:
    return common.check_ports(ports(ctx))
