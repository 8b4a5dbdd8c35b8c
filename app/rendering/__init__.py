"""Rendering: a workload's resolved spec -> the Kubernetes manifests that run it (SPEC §6).

Pure: plain data in, plain JSON-able dicts out; no I/O, no FastAPI, no SQLAlchemy.

* :func:`check` lists every reason a workload cannot be rendered (names and labels beyond
  Kubernetes' limits, requests this cluster's scheduler cannot express such as a GPU fraction
  without KAI...), as ``(field, message)`` pairs, so that the API refuses the submission with a 422
  instead of sending the cluster something it would reject. :func:`check_names` is the part about
  names and labels alone.
* :func:`render` returns the ordered manifests (Services before the objects that use them, the
  HPA last) and raises :class:`RenderError` when :func:`check` finds anything.

Objects are named after the workload (``<name>``, 1-40 characters), labels carry the ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.domain import kinds
from app.domain.labels import KUEUE_QUEUE_LABEL
from app.rendering import common, distributed, inference, interactive, training
from app.rendering.common import Manifest, Problem
from app.rendering.context import (
    DEFAULT_NODE_POOL_LABEL_KEY,
    DEFAULT_NODE_TYPE_LABEL_KEY,
    SCHEDULERS,
    RenderContext,
    Scheduler,
)

__all__ = [
    "DEFAULT_NODE_POOL_LABEL_KEY",
    "DEFAULT_NODE_TYPE_LABEL_KEY",
    "SCHEDULERS",
    "Manifest",
    "Problem",
    "RenderContext",
    "RenderError",
    "Scheduler",
    "check",
    "check_names",
    "is_stopped",
    "object_refs",
    "queued_by_kueue",
    "render",
    "stopped_form",
]

_RENDERERS: dict[str, Callable[[RenderContext], list[Manifest]]] = {
    "interactive": interactive.render,
    "training": training.render,
    "distributed": distributed.render,
    "inference": inference.render,
}
_CHECKS: dict[str, Callable[[RenderContext], list[Problem]]] = {
    "interactive": interactive.check,
    "training": training.check,
    "distributed": distributed.check,
    "inference": inference.check,
}


class RenderError(ValueError):
    """The workload cannot be rendered; ``problems`` are :func:`check`'s ``(field, message)``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def check_names(ctx: RenderContext) -> list[Problem]:
    """Names, labels and annotations that would not fit Kubernetes' rules."""
    problems = common.check_context(ctx) + common.check_spec_names(ctx.spec)
    master = ctx.spec.get("masterSpec")
    if ctx.workload_type == "distributed" and master:
        problems += common.check_spec_names(master, "masterSpec.")
    return _dedupe(problems)


def check(ctx: RenderContext) -> list[Problem]:
    """Every reason the workload cannot be rendered; empty when :func:`render` will succeed."""
    problems = common.check_context(ctx)
    if ctx.workload_type not in _CHECKS:
        return problems
    problems += common.check_container_spec(ctx, ctx.spec)
    problems += _CHECKS[ctx.workload_type](ctx)
    return _dedupe(problems)


def render(ctx: RenderContext) -> list[Manifest]:
    """The workload's manifests, in apply order; raises :class:`RenderError` if :func:`check`
    finds a problem (a scheduler setting changed since submission, for instance)."""
    problems = check(ctx)
    if problems:
        raise RenderError(problems)
    return _RENDERERS[ctx.workload_type](ctx)


def object_refs(manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``{apiVersion, kind, name}`` of each manifest: the objects a workload makes."""
    return [
        {"apiVersion": m["apiVersion"], "kind": m["kind"], "name": m["metadata"]["name"]}
        for m in manifests
    ]


def stopped_form(manifests: Sequence[Manifest]) -> list[Manifest]:
    """The stopped form of rendered manifests: what ``render`` gives with ``stopped=True``.

    The reconciler stops a workload by applying this to the manifests stored at submission, so
    that a stop changes exactly ``replicas`` (StatefulSet, Deployment) or ``suspend`` (Job,
    ``runPolicy.suspend`` of Kubeflow jobs) and nothing else, whatever the settings are now.
    """
    return [_stop(m) for m in manifests]


def is_stopped(manifests: Sequence[Mapping[str, Any]]) -> bool:
    """Whether manifests are in the stopped form (judged by the workload's main object)."""
    for m in manifests:
        kind = kinds.of(m)
        if kind is None or kind.stop is None:
            continue
        spec = m.get("spec") or {}
        if kind.stop == "replicas":
            return spec.get("replicas") == 0
        if kind.stop == "suspend":
            return bool(spec.get("suspend"))
        return bool((spec.get("runPolicy") or {}).get("suspend"))
    return False


def queued_by_kueue(manifests: Sequence[Mapping[str, Any]]) -> bool:
    """Whether Kueue admits the workload's main object (a Job or Kubeflow job with Kueue's
    queue label): Kueue then owns its ``suspend``, and it is stopped through Kueue."""
    for m in manifests:
        kind = kinds.of(m)
        if kind is not None and kind.owner_rank is not None and kind.finite:
            labels = (m.get("metadata") or {}).get("labels") or {}
            return KUEUE_QUEUE_LABEL in labels
    return False


def _stop(manifest: Manifest) -> Manifest:
    kind = kinds.of(manifest)
    stop = kind.stop if kind is not None else None
    spec = manifest.get("spec") or {}
    if stop == "replicas":
        return {**manifest, "spec": {**spec, "replicas": 0}}
    if stop == "suspend":
        return {**manifest, "spec": {**spec, "suspend": True}}
    if stop == "runPolicy":
        return {**manifest, "spec": {**spec, "runPolicy": {**spec["runPolicy"], "suspend": True}}}
    return manifest
