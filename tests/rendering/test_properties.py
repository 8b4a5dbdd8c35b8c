"""Properties: for any valid name and spec, what is rendered is valid, and what is refused is
refused before anything is rendered."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from app.domain.labels import WORKLOAD_ID_LABEL
from app.rendering import RenderContext, RenderError, check, render
from app.rendering.validation import validate_manifest
from tests.rendering.strategies import contexts

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def all_labels(node: Any) -> list[tuple[str, Any]]:
    """Every labels / matchLabels / selector map anywhere in a manifest."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                out += list(value.items())
            out += all_labels(value)
    elif isinstance(node, list):
        for item in node:
            out += all_labels(item)
    return out


def assert_fits(ctx: RenderContext, manifests: list[dict[str, Any]]) -> None:
    for obj in manifests:
        assert validate_manifest(obj) == []
        name = obj["metadata"]["name"]
        assert len(name) <= (52 if obj["kind"] == "StatefulSet" else 63)
        assert obj["metadata"]["namespace"] == ctx.namespace
        assert obj["metadata"]["labels"][WORKLOAD_ID_LABEL] == ctx.workload_id
        for key, value in all_labels(obj):
            assert len(key.rpartition("/")[2]) <= 63
            assert isinstance(value, str)
            assert len(value) <= 63


def _clean_property(ctx: RenderContext) -> None:
    problems = check(ctx)
    assert problems == [], problems
    assert_fits(ctx, render(ctx))


@SETTINGS
@given(ctx=contexts(clean=True, workload_type="interactive"))
def test_any_clean_interactive_renders_valid_objects(ctx: RenderContext) -> None:
    _clean_property(ctx)


@SETTINGS
@given(ctx=contexts(clean=True, workload_type="training"))
def test_any_clean_training_renders_valid_objects(ctx: RenderContext) -> None:
    _clean_property(ctx)


@SETTINGS
@given(ctx=contexts(clean=True, workload_type="distributed"))
def test_any_clean_distributed_renders_valid_objects(ctx: RenderContext) -> None:
    _clean_property(ctx)


@SETTINGS
@given(ctx=contexts(clean=True, workload_type="inference"))
def test_any_clean_inference_renders_valid_objects(ctx: RenderContext) -> None:
    _clean_property(ctx)


@settings(SETTINGS, max_examples=300)
@given(ctx=contexts(clean=False))
def test_check_is_complete(ctx: RenderContext) -> None:
    """Whatever check() lets through validates; whatever it refuses, render() refuses too."""
    problems = check(ctx)
    event("refused" if problems else "rendered")
    if problems:
        with pytest.raises(RenderError) as exc:
            render(ctx)
        assert exc.value.problems == problems
        for field, message in problems:
            assert field
            assert message
        return
    assert_fits(ctx, render(ctx))


@SETTINGS
@given(ctx=contexts(clean=True))
def test_rendering_is_deterministic(ctx: RenderContext) -> None:
    assert render(ctx) == render(ctx)
