"""Kubernetes resource quantities: syntax check and numeric value (``1G`` < ``1Gi`` < ``2G``)."""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

# The grammar of k8s.io/apimachinery/pkg/api/resource.Quantity, without the sign: a resource
# amount is never negative. A number, then a decimal exponent, a binary suffix or an SI one.
_QUANTITY_RE = re.compile(
    r"^(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6))},
    **{s: Decimal(10) ** e for s, e in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}
EXAMPLES = "(examples: '10Gi', '500M', '0.5')"
# k8s.io/apimachinery's resource.Quantity: "no quantity may represent a number greater than
# 2^63-1". Beyond it the renderers, the manifests' validation and the API server all refuse.
MAX_QUANTITY = Decimal(2**63 - 1)
# Exponents as large as a quantity's 64 characters allow ("1e999999999"), without overflowing
# the default context; tiny values underflow to 0 (Kubernetes rounds them up to 1n).
_WIDE = Context(Emax=MAX_EMAX, Emin=MIN_EMIN)


def is_quantity(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and _QUANTITY_RE.fullmatch(value) is not None


def quantity_value(value: object) -> Decimal:
    """The numeric value of a quantity (a string, or a plain non-negative number); raises
    ValueError for anything else, whatever its type."""
    if isinstance(value, str):
        return _parse(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < float("inf"):  # negative, infinite or NaN
            raise ValueError("a quantity must be a finite number, not negative")
        return _bounded(Decimal(str(value)), value)
    raise ValueError(f"must be a Kubernetes quantity {EXAMPLES}, not {_kind(value)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a number" if isinstance(value, int | float) else type(value).__name__


@lru_cache(maxsize=4096)
def _parse(value: str) -> Decimal:
    # Each submission checks its quantities several times (spec model, policy, rendering), and
    # the same few values recur across submissions; parsing is the slow part. (A ValueError is
    # not cached.) Only strings get here: anything else is not hashable, or not a quantity.
    match = _QUANTITY_RE.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity {EXAMPLES}")
    number, exponent, suffix = match.groups()
    if exponent is None:
        amount = Decimal(number) * _SUFFIXES[suffix] if suffix else Decimal(number)
    else:
        try:
            amount = Decimal(number).scaleb(int(exponent), context=_WIDE)
        except ArithmeticError:  # an exponent of 19 digits or more ("1e+9999999999999999999")
            amount = MAX_QUANTITY + 1 if Decimal(number) and int(exponent) > 0 else Decimal(0)
    return _bounded(amount, value)


def _bounded(amount: Decimal, shown: object) -> Decimal:
    if amount > MAX_QUANTITY:
        raise ValueError(
            f"{shown!r} is more than Kubernetes can represent: a quantity is at most "
            f"{MAX_QUANTITY} (2^63-1)"
        )
    return amount


def _string_only(value: Any) -> Any:
    # Before pydantic's own str check, so that every wrong type gets the same message as a bad
    # string, whichever model (spec, policy defaults, quota) holds the quantity.
    if not isinstance(value, str):
        raise ValueError(f"must be a Kubernetes quantity {EXAMPLES}, not {_kind(value)}")
    return value


def _check_quantity(value: str) -> str:
    quantity_value(value)
    return value


class QuantityMarker:
    """Marks a string field as a Kubernetes quantity, for the policy field catalogue."""


Quantity = Annotated[
    str,
    Field(examples=["10Gi"], json_schema_extra={"format": "quantity"}),
    BeforeValidator(_string_only),
    AfterValidator(_check_quantity),
    QuantityMarker(),
]
"""A Kubernetes quantity as a string, wherever the API takes one (spec, policy defaults,
project quotas); a number, object, list or boolean is refused with the field's path."""
