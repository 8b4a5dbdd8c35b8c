"""The reconciler's stopped form of stored manifests is exactly what rendering stopped gives."""

from __future__ import annotations

import dataclasses

import pytest

from app.rendering import RenderContext, check, is_stopped, render, stopped_form
from tests.rendering.cases import matrix

CASES = [(case_id, ctx) for case_id, ctx in matrix() if not check(ctx)]


@pytest.mark.parametrize(("case_id", "ctx"), CASES, ids=[c for c, _ in CASES])
def test_stopped_form_equals_rendering_stopped(case_id: str, ctx: RenderContext) -> None:
    running = render(dataclasses.replace(ctx, stopped=False))
    stopped = render(dataclasses.replace(ctx, stopped=True))
    assert stopped_form(running) == stopped
    assert is_stopped(stopped)
    # Kueue admits suspended Jobs and Kubeflow jobs: their running form starts suspended too.
    kueue_suspends = ctx.scheduler == "kueue" and ctx.workload_type in ("training", "distributed")
    assert is_stopped(running) == kueue_suspends
