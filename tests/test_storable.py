"""The storable check's shortcut agrees with its walk: a body it passes without walking has
nothing the walk would find, and every kind of unstorable value makes it walk."""

from __future__ import annotations

import json

import pytest

from app import storable

UNSTORABLE = [
    b'{"name": "a\\u0000b"}',
    b'{"spec": {"labels": {"\\ud800": "x"}}}',
    b'{"spec": {"args": ["\\udfff"]}}',
    b'{"spec": {"autoscaling": {"metricThreshold": NaN}}}',
    b'{"spec": {"autoscaling": {"metricThreshold": -Infinity}}}',
    b'{"spec": {"autoscaling": {"metricThreshold": 1e309}}}',
]


@pytest.mark.parametrize("raw", UNSTORABLE)
def test_every_unstorable_value_is_walked_and_found(raw: bytes) -> None:
    assert not storable.plainly_storable(raw)
    assert storable.problems(json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "train", "spec": {"image": "pytorch/pytorch:2.4", "args": ["--lr", "0.1"]}}',
        b'{"spec": {"labels": {"emoji": "\\ud83d\\ude00"}, "compute": {"gpuPortionRequest": 0.5}}}',
        b'{"spec": {"autoscaling": {"metricThreshold": 1e308}}}',
    ],
)
def test_storable_bodies_pass_without_a_walk(raw: bytes) -> None:
    assert storable.plainly_storable(raw)
    assert storable.problems(json.loads(raw)) == []
