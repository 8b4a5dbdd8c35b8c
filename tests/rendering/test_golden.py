"""Golden files: one representative workload per type and scheduler mode, as readable YAML.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/rendering`` and review
the diff; without it, any difference fails.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

from app.rendering import render
from app.rendering.validation import validate_manifests
from tests.rendering.cases import GOLDEN, golden_ctx

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def to_yaml(manifests: list[dict[str, object]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, width=100)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden(case: str) -> None:
    manifests = render(golden_ctx(case))
    assert validate_manifests(manifests) == []
    text = to_yaml(manifests)
    path = GOLDEN_DIR / f"{case}.yaml"
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{case}.yaml",
                tofile="rendered",
            )
        )
        pytest.fail(f"rendering of {case} differs from its golden file:\n{diff}")


def test_golden_files_all_have_a_case() -> None:
    orphans = sorted(p.stem for p in GOLDEN_DIR.glob("*.yaml") if p.stem not in GOLDEN)
    assert orphans == [], "golden files without a case (delete them)"


def test_golden_files_parse_back_to_the_rendering() -> None:
    for case in GOLDEN:
        path = GOLDEN_DIR / f"{case}.yaml"
        if path.exists():
            assert list(yaml.safe_load_all(path.read_text())) == render(golden_ctx(case))
