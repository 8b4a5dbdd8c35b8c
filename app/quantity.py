"""Kubernetes resource quantities: syntax check and numeric value (``1G`` < ``1Gi`` < ``2G``)."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

from kubernetes.utils.quantity import parse_quantity
from pydantic import AfterValidator, Field

# The grammar of k8s.io/apimachinery/pkg/api/resource.Quantity, without the sign: a resource
# amount is never negative.
_QUANTITY_RE = re.compile(
    r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)


def is_quantity(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and _QUANTITY_RE.match(value) is not None


def quantity_value(value: str | int | float) -> Decimal:
    """The numeric value of a quantity; raises ValueError on bad syntax."""
    if isinstance(value, bool):
        raise ValueError("a quantity is a string such as '10Gi' or '500m'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a quantity must not be negative")
        return Decimal(str(value))
    return _parse(value)


@lru_cache(maxsize=4096)
def _parse(value: str) -> Decimal:
    # Each submission checks its quantities several times (spec model, policy, rendering), and
    # the same few values recur across submissions; parsing is the slow part. (A ValueError is
    # not cached.)
    if not is_quantity(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity (examples: '10Gi', '500M', '0.5')"
        )
    return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]


def _check_quantity(value: str) -> str:
    quantity_value(value)
    return value


class QuantityMarker:
    """Marks a string field as a Kubernetes quantity, for the policy field catalogue."""


Quantity = Annotated[
    str,
    Field(examples=["10Gi"], json_schema_extra={"format": "quantity"}),
    AfterValidator(_check_quantity),
    QuantityMarker(),
]
