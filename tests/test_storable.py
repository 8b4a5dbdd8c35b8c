"""app.storable: every unstorable value found wherever it hides and named by its path, and the
shortcut agrees with the walk (a body it passes without walking has nothing the walk would find)."""

from __future__ import annotations

import json
import math

import pytest

from app import storable
from app.storable import problems, scrub

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


NUL = "must not contain the NUL character (U+0000)"
SURROGATE = "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff): they are not text"


def test_every_bad_value_and_key_is_named_by_its_path() -> None:
    document = json.loads(
        '{"spec": {"labels": {"a\\u0000": "x", "ok": "\\ud800"}, "args": ["a", "b\\u0000",'
        ' 1e999, NaN, -Infinity]}, "x-y": {"\\udc00": 1}, "fine": [1, 2.5, "\\ud83d\\ude00"]}'
    )
    found = {p["field"]: p["message"] for p in problems(document, root="")}
    assert found == {
        'spec.labels["a\\u0000"]': f"key: {NUL}",
        "spec.labels.ok": SURROGATE,
        "spec.args[1]": NUL,
        "spec.args[2]": found["spec.args[2]"],
        "spec.args[3]": found["spec.args[3]"],
        "spec.args[4]": found["spec.args[4]"],
        '["x-y"]["\\udc00"]': f"key: {SURROGATE}",
    }
    assert all("finite" in found[f"spec.args[{i}]"] for i in (2, 3, 4))


def test_what_can_be_stored_passes_however_it_looks() -> None:
    fine: list[object] = [
        {"text": "a literal \\u0000, not a NUL", "emoji": "\U0001f600", "n": 2**70, "x": 1e308},
        [],
        None,
        "plain",
    ]
    for value in fine:
        assert problems(value) == []
    deep: dict[str, object] = {"a": "\x00"}
    for _ in range(5000):  # deeper than Python recurses
        deep = {"a": deep}
    assert problems(deep) == [{"field": "a" + ".a" * 5000, "message": NUL}]
    assert problems("a\x00") == [{"field": "body", "message": NUL}]
    assert problems(math.nan, root="x") == [
        {"field": "x", "message": problems(math.inf)[0]["message"]}
    ]


def test_scrub_keeps_a_record_of_what_could_not_be_stored() -> None:
    assert scrub({"a\x00": ["\ud800", "ok", math.inf, 3]}) == {"a\ufffd": ["\ufffd", "ok", None, 3]}
    assert scrub("\ud83d\ude00") == "\U0001f600"  # a split pair is the character it encodes
    assert scrub("plain") == "plain"
