"""Project quotas (SPEC §1), in Run:ai's and KAI-Scheduler's model: pure, no I/O.

Per resource (``gpu``, ``cpu``, ``memory``) a project has a ``deserved`` amount (guaranteed), a
``limit`` (the most it may use, over-quota included; None: no cap) and an ``overQuotaWeight``
(its share of idle capacity). A resource the quota leaves out is not limited at all: no cap, and
its use is never over quota (KAI's ``-1``), which is how projects without a quota behaved
before quotas were enforced.

Amounts are kept in base units as :class:`~decimal.Decimal`: GPUs (a 0.5 fraction counts as
0.5), CPU cores, memory bytes. The stored and API form is :func:`document` /
:func:`from_document`: ``{"gpu": {"deserved": "4", "limit": "8", "overQuotaWeight": "1"}, ...}``
with each amount as the client wrote it (``"500m"``, ``"64Gi"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from app.domain.quantity import quantity_value

Resource = Literal["gpu", "cpu", "memory"]
RESOURCES: tuple[Resource, ...] = get_args(Resource)
UNITS: Mapping[Resource, str] = {"gpu": "GPUs", "cpu": "CPU cores", "memory": "bytes"}
DEFAULT_WEIGHT = Decimal(1)


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    """One resource's quota in base units; ``deserved`` None: not limited (left out)."""

    deserved: Decimal | None = None
    limit: Decimal | None = None
    over_quota_weight: Decimal = DEFAULT_WEIGHT

    @property
    def unlimited(self) -> bool:
        return self.deserved is None

    @property
    def cap(self) -> Decimal | None:
        """The most the project may use: the limit (None: no cap)."""
        return None if self.deserved is None else self.limit


UNLIMITED = ResourceQuota()


@dataclass(frozen=True, slots=True)
class Quota:
    """A project's quota: one :class:`ResourceQuota` per resource (unlimited when left out)."""

    gpu: ResourceQuota = UNLIMITED
    cpu: ResourceQuota = UNLIMITED
    memory: ResourceQuota = UNLIMITED

    def of(self, resource: Resource) -> ResourceQuota:
        found: ResourceQuota = getattr(self, resource)
        return found

    @property
    def limited(self) -> tuple[Resource, ...]:
        """The resources the quota sets."""
        return tuple(r for r in RESOURCES if not self.of(r).unlimited)


NO_QUOTA = Quota()


def amount(value: Any) -> Decimal:
    """An amount as written (a number of GPUs, a quantity of CPU or memory) in base units."""
    return quantity_value(format(value, "f") if isinstance(value, Decimal) else value)


def from_document(doc: Mapping[str, Any] | None) -> Quota:
    """The quota stored as :func:`document` wrote it (what the API accepted)."""
    if not doc:
        return NO_QUOTA
    parts: dict[str, ResourceQuota] = {}
    for resource in RESOURCES:
        entry = doc.get(resource)
        if not isinstance(entry, Mapping):
            continue
        limit = entry.get("limit")
        parts[resource] = ResourceQuota(
            deserved=amount(entry.get("deserved") or 0),
            limit=None if limit is None else amount(limit),
            over_quota_weight=Decimal(str(entry.get("overQuotaWeight", DEFAULT_WEIGHT))),
        )
    return Quota(**parts)


def document(entries: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The stored form of validated quota entries (``{resource: {deserved, limit,
    overQuotaWeight}}``, amounts as written); resources without an entry are left out."""
    out: dict[str, Any] = {}
    for resource in RESOURCES:
        entry = entries.get(resource)
        if entry is None:
            continue
        out[resource] = {
            "deserved": _written(entry.get("deserved", "0")),
            "limit": None if entry.get("limit") is None else _written(entry["limit"]),
            "overQuotaWeight": _written(entry.get("overQuotaWeight", DEFAULT_WEIGHT)),
        }
    return out


def _written(value: Any) -> str:
    # Decimal keeps what the client wrote ("0.5", "2"); str() of a Decimal never uses exponents
    # for the magnitudes a quota allows.
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def check_limit(deserved: Any, limit: Any) -> str | None:
    """Why ``limit`` cannot go with ``deserved`` (None: it can)."""
    if limit is None:
        return None
    if amount(limit) < amount(deserved):
        return f"must be at least deserved ({deserved})"
    return None


class QuotaBook:
    """Projects' quotas from their stored documents, each parsed again only when it changed
    (a reader that looks at every project each cycle pays a comparison per project)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Any, Quota]] = {}

    def update(self, rows: Iterable[tuple[str, Any]]) -> dict[str, Quota]:
        kept = self._kept
        self._kept = {
            name: kept[name] if name in kept and kept[name][0] == doc else (doc, from_document(doc))
            for name, doc in rows
        }
        return {name: entry[1] for name, entry in self._kept.items()}
