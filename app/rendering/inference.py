"""Inference workloads: a Deployment, a Service, and a HorizontalPodAutoscaler when it scales.

The Service ``<name>`` exposes the serving port as itself (named ``serving``; appProtocol ``http``,
or ``kubernetes.io/h2c`` for gRPC), with any ClusterIP ``ports``; other service types get their
own Services as for interactive workloads. The container has a readiness probe on the serving
port: ``httpGet`` on the context's ``inference_probe_path`` (default ``/``) for http, a ``grpc``
probe (the gRPC health-checking protocol) for grpc.

Replicas are ``autoscaling.minReplicas`` (default 1). When ``maxReplicas > minReplicas`` an
autoscaling/v2 HPA ``<name>`` scales the Deployment on one metric:

==================  =================================================================
``cpu-utilization`` Resource metric ``cpu``, target ``averageUtilization`` = threshold
                    (percent of the CPU request, rounded to an integer; needs a request)
``concurrency``     Pods metric ``runplane_concurrency``: in-flight requests per pod
``throughput``      Pods metric ``runplane_throughput``: requests per second per pod
``latency``         Pods metric ``runplane_latency_milliseconds``: mean request latency
==================  =================================================================

Pods metrics target ``averageValue`` = threshold (a quantity, to the milli-unit); a custom metrics
adapter (e.g. prometheus-adapter) must serve them from the model servers' metrics.

``replicas`` is always rendered (the HPA then moves it within its bounds), because a Deployment
applied without ``replicas`` keeps its last value: after a stop (0) it would stay at 0, and an HPA
never scales up from 0. Stopped renders ``replicas: 0`` and keeps the HPA: Kubernetes disables
autoscaling while the target has no replicas (condition ScalingDisabled), so nothing scales the
stopped Deployment back up, and stop and resume touch no other object.
"""

from __future__ import annotations

from typing import Any

from app.rendering import common, syntax
from app.rendering.common import Manifest, Problem
from app.rendering.context import RenderContext

SERVING_PORT_NAME = "serving"
POD_METRICS = {
    "concurrency": "runplane_concurrency",
    "throughput": "runplane_throughput",
    "latency": "runplane_latency_milliseconds",
}


def replica_bounds(spec: Any) -> tuple[int, int]:
    auto = spec.get("autoscaling") or {}
    lo = auto.get("minReplicas")
    lo = int(lo) if lo is not None else 1
    hi = auto.get("maxReplicas")
    hi = int(hi) if hi is not None else lo
    return lo, hi


def serving_port(ctx: RenderContext) -> dict[str, Any] | None:
    serving = ctx.spec.get("servingPort") or {}
    if not serving.get("container"):
        return None
    number = int(serving["container"])
    grpc = serving.get("protocol") == "grpc"
    return {
        "name": SERVING_PORT_NAME,
        "container": number,
        "serviceType": "ClusterIP",
        "external": number,
        "appProtocol": "kubernetes.io/h2c" if grpc else "http",
    }


def ports(ctx: RenderContext) -> list[dict[str, Any]]:
    serving = serving_port(ctx)
    return ([serving] if serving else []) + common.normalized_ports(ctx.spec)


def readiness_probe(ctx: RenderContext) -> dict[str, Any] | None:
    serving = ctx.spec.get("servingPort") or {}
    if not serving.get("container"):
        return None
    port = int(serving["container"])
    if serving.get("protocol") == "grpc":
        return {"grpc": {"port": port}, "periodSeconds": 10, "failureThreshold": 3}
    return {
        "httpGet": {"path": ctx.inference_probe_path, "port": port},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }


def _metric(auto: Any) -> dict[str, Any]:
    metric = auto.get("metric")
    threshold = float(auto.get("metricThreshold") or 0)
    if metric == "cpu-utilization":
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": max(1, round(threshold))},
            },
        }
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": POD_METRICS[metric]},
            "target": {
                "type": "AverageValue",
                "averageValue": syntax.decimal_quantity(threshold),
            },
        },
    }


def render(ctx: RenderContext) -> list[Manifest]:
    spec = ctx.spec
    lo, hi = replica_bounds(spec)
    workload_ports = ports(ctx)
    template = common.pod_template(
        ctx,
        spec,
        container_name=ctx.name,
        restart_policy="Always",
        pod_queue_label=True,
        ports=workload_ports,
        readiness_probe=readiness_probe(ctx),
    )
    deployment = common.manifest(
        "apps/v1",
        "Deployment",
        common.object_meta(ctx, ctx.name, workload_object=True),
        {
            "replicas": 0 if ctx.stopped else lo,
            "selector": {"matchLabels": common.selector_labels(ctx)},
            "template": template,
        },
    )
    out = [*common.port_services(ctx, workload_ports), deployment]
    if hi > lo:
        out.append(
            common.manifest(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                common.object_meta(ctx, ctx.name),
                {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": ctx.name,
                    },
                    "minReplicas": lo,
                    "maxReplicas": hi,
                    "metrics": [_metric(spec.get("autoscaling") or {})],
                },
            )
        )
    return out


def check(ctx: RenderContext) -> list[Problem]:
    spec = ctx.spec
    problems: list[Problem] = []
    if not (spec.get("servingPort") or {}).get("container"):
        problems.append(("servingPort", "servingPort is required for inference"))
    user_ports = common.normalized_ports(spec)
    problems += common.check_ports(user_ports, reserved_names=(SERVING_PORT_NAME,))
    serving = serving_port(ctx)
    if serving:
        for port in user_ports:
            if port["serviceType"] == "ClusterIP" and port["external"] == serving["external"]:
                problems.append(
                    ("ports", f"port {port['name']!r} takes the serving port {port['external']}")
                )
    lo, hi = replica_bounds(spec)
    auto = spec.get("autoscaling") or {}
    if hi > lo:
        if lo < 1:
            problems.append(
                (
                    "autoscaling.minReplicas",
                    "scaling to zero is not supported: minReplicas must be at least 1 when "
                    "maxReplicas > minReplicas",
                )
            )
        metric = auto.get("metric")
        if metric is None or auto.get("metricThreshold") is None:
            problems.append(
                ("autoscaling.metric", "metric and metricThreshold are required when max > min")
            )
        elif metric == "cpu-utilization" and not (spec.get("compute") or {}).get("cpuCoreRequest"):
            problems.append(
                (
                    "autoscaling.metric",
                    "cpu-utilization is relative to the CPU request: set compute.cpuCoreRequest",
                )
            )
        elif metric not in POD_METRICS and metric != "cpu-utilization":
            problems.append(("autoscaling.metric", f"unknown metric {metric!r}"))
    return problems
