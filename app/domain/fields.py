"""The catalogue of policy-able fields per workload type, derived from the spec models.

Walking ``SPEC_MODELS`` (rather than keeping a hand-written list) means a field added to a spec
model is at once policy-able, validated in policies and documented by ``GET /explain``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo as PydanticFieldInfo

from app.domain import baseline
from app.domain.quantity import QuantityMarker
from app.domain.spec import SPEC_MODELS, KubeInt, WorkloadType

FieldKind = Literal["int", "float", "bool", "string", "quantity", "string-list", "itemized", "map"]

ITEM_KEY_EXTRA = "x-runplane-item-key"

# SPEC §3: which rule keys fit which kind of value.
_ANY_RULES = ("required", "canEdit")
RULE_KEYS_BY_KIND: Mapping[FieldKind, tuple[str, ...]] = types.MappingProxyType(
    {
        "int": (*_ANY_RULES, "min", "max", "step", "options"),
        "float": (*_ANY_RULES, "min", "max"),
        "quantity": (*_ANY_RULES, "min", "max"),
        "string": (*_ANY_RULES, "options", "pattern"),
        "bool": _ANY_RULES,
        "string-list": _ANY_RULES,
        "itemized": (*_ANY_RULES, "canAdd", "locked"),
        "map": _ANY_RULES,
    }
)
RULE_KEYS: tuple[str, ...] = (
    "required",
    "canEdit",
    "min",
    "max",
    "step",
    "options",
    "pattern",
    "canAdd",
    "locked",
    baseline.ALLOW_UNSAFE,
)

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One policy-able field: its dotted camelCase path and what a policy may say about it."""

    path: str
    kind: FieldKind
    description: str
    # Allowed values when the model's type is a Literal; policy `options` must be a subset.
    options: tuple[str | int, ...] | None = None
    # Bounds the model itself enforces (pydantic ge/gt/le/lt), for documentation.
    ge: int | float | None = None
    gt: int | float | None = None
    le: int | float | None = None
    lt: int | float | None = None
    # Itemized lists only: the key items merge by, the item's fields, and the values an item
    # field takes when omitted (so that `{"readOnly": false}` and no readOnly compare equal).
    item_key: str | None = None
    item_fields: tuple[FieldInfo, ...] = ()
    item_defaults: Mapping[str, Scalar] | None = None
    # Item fields only: whether an item must carry the field. (Spec fields themselves are all
    # optional, as a policy may supply them.)
    required_in_item: bool = False
    # The safe default that guards the field (app.domain.baseline), if any.
    safe_default: baseline.Check | None = None

    @property
    def rule_keys(self) -> tuple[str, ...]:
        """The rule keys a policy may use on this field."""
        by_kind = RULE_KEYS_BY_KIND[self.kind]
        return (*by_kind, baseline.ALLOW_UNSAFE) if self.safe_default else by_kind

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys, empty attributes left out) for ``GET /explain``."""
        out: dict[str, Any] = {
            "field": self.path,
            "kind": self.kind,
            "description": self.description,
            "ruleKeys": list(self.rule_keys),
        }
        if self.options is not None:
            out["options"] = list(self.options)
        bounds = {
            name: bound
            for name, bound in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt))
            if bound is not None
        }
        if bounds:
            out["bounds"] = bounds
        if self.item_key is not None:
            out["itemKey"] = self.item_key
            out["itemFields"] = [f._item_dict() for f in self.item_fields]
        if self.safe_default is not None:
            out["safeDefault"] = baseline.explanation(self.safe_default)
        return out

    def _item_dict(self) -> dict[str, Any]:
        # Fields inside list items take no rules of their own: leave ruleKeys out.
        out = self.to_dict()
        del out["ruleKeys"]
        out["required"] = self.required_in_item
        return out


@dataclass(frozen=True, slots=True)
class _Catalogue:
    fields: Mapping[str, FieldInfo]
    groups: frozenset[str]


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; other unions are left alone (and rejected by the caller)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _unwrap_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """Peel ``Annotated[...]`` layers, collecting their metadata (constraints, markers)."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        args = get_args(annotation)
        annotation = args[0]
        metadata.extend(args[1:])
    return annotation, metadata


@dataclass(frozen=True, slots=True)
class _Bounds:
    ge: int | float | None = None
    gt: int | float | None = None
    le: int | float | None = None
    lt: int | float | None = None


def _bounds(metadata: list[Any]) -> _Bounds:
    found: dict[str, int | float] = {}
    for meta in metadata:
        if isinstance(meta, KubeInt):  # the range of the field's Kubernetes type, then its own
            found["ge"] = max(found.get("ge", meta.lo), meta.lo)
            found["le"] = min(found.get("le", meta.hi), meta.hi)
        for name, cls in (
            ("ge", annotated_types.Ge),
            ("gt", annotated_types.Gt),
            ("le", annotated_types.Le),
            ("lt", annotated_types.Lt),
        ):
            if isinstance(meta, cls):
                found[name] = getattr(meta, name)
    return _Bounds(**found)


def _alias(name: str, field: PydanticFieldInfo) -> str:
    return field.alias or to_camel(name)


def _item_key(field: PydanticFieldInfo) -> str | None:
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        key = extra.get(ITEM_KEY_EXTRA)
        if isinstance(key, str):
            return key
    return None


def _walk(
    model: type[BaseModel],
    prefix: str,
    *,
    fields: dict[str, FieldInfo],
    groups: set[str],
    stack: tuple[type[BaseModel], ...],
) -> None:
    if model in stack:  # a self-referencing model would otherwise recurse for ever
        raise TypeError(f"{model.__name__} refers to itself; the catalogue cannot be finite")
    for name, field in model.model_fields.items():
        path = prefix + _alias(name, field)
        annotation, metadata = _unwrap_annotated(_strip_optional(field.annotation))
        metadata = [*field.metadata, *metadata]
        description = field.description or ""
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            groups.add(path)
            _walk(annotation, path + ".", fields=fields, groups=groups, stack=(*stack, model))
            continue
        info = _leaf(path, annotation, metadata, description, field)
        fields[path] = dataclasses.replace(info, safe_default=baseline.check_at(path))


def _leaf(
    path: str,
    annotation: Any,
    metadata: list[Any],
    description: str,
    field: PydanticFieldInfo,
) -> FieldInfo:
    origin = get_origin(annotation)
    if origin is Literal:
        values = get_args(annotation)
        kind: FieldKind = "int" if all(type(v) is int for v in values) else "string"
        return FieldInfo(path=path, kind=kind, description=description, options=tuple(values))
    if origin is list:
        (item,) = get_args(annotation)
        item, _ = _unwrap_annotated(_strip_optional(item))
        if isinstance(item, type) and issubclass(item, BaseModel):
            key = _item_key(field)
            if key is None:
                raise TypeError(
                    f"{path}: a list of {item.__name__} needs json_schema_extra "
                    f"{{{ITEM_KEY_EXTRA!r}: ...}} to be merged by policies"
                )
            item_fields = tuple(_item_fields(item))
            return FieldInfo(
                path=path,
                kind="itemized",
                description=description,
                item_key=key,
                item_fields=item_fields,
                item_defaults=types.MappingProxyType(_item_defaults(item)),
            )
        if item is str:
            return FieldInfo(path=path, kind="string-list", description=description)
    if origin is dict:
        return FieldInfo(path=path, kind="map", description=description)
    bounds = _bounds(metadata)
    # bool before int: bool is a subclass of int.
    if annotation is bool:
        return FieldInfo(path=path, kind="bool", description=description)
    if annotation is int or annotation is float:
        return FieldInfo(
            path=path,
            kind="int" if annotation is int else "float",
            description=description,
            ge=bounds.ge,
            gt=bounds.gt,
            le=bounds.le,
            lt=bounds.lt,
        )
    if annotation is str:
        if any(isinstance(m, QuantityMarker) for m in metadata):
            return FieldInfo(path=path, kind="quantity", description=description)
        return FieldInfo(path=path, kind="string", description=description)
    # Failing loudly makes whoever adds an unusual field type decide how policies treat it.
    raise TypeError(f"{path}: the policy catalogue does not know the type {annotation!r}")


def _item_fields(model: type[BaseModel]) -> list[FieldInfo]:
    out: list[FieldInfo] = []
    for name, field in model.model_fields.items():
        path = _alias(name, field)
        annotation, metadata = _unwrap_annotated(_strip_optional(field.annotation))
        info = _leaf(path, annotation, [*field.metadata, *metadata], field.description or "", field)
        out.append(dataclasses.replace(info, required_in_item=field.is_required()))
    return out


def _item_defaults(model: type[BaseModel]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for name, field in model.model_fields.items():
        if not field.is_required() and isinstance(field.default, Scalar):
            out[_alias(name, field)] = field.default
    return out


def build_catalogue(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """Every policy-able leaf of ``model``, by dotted camelCase path (groups are not leaves)."""
    fields: dict[str, FieldInfo] = {}
    _walk(model, "", fields=fields, groups=set(), stack=())
    return fields


@cache
def map_paths(model: type[BaseModel]) -> frozenset[str]:
    """Dotted paths of the map fields (labels, annotations) of a spec model: where a field path
    shows a key (``labels["team"]``) rather than a field (``app.fieldpath``)."""
    return frozenset(path for path, info in build_catalogue(model).items() if info.kind == "map")


@cache
def _catalogue(workload_type: WorkloadType) -> _Catalogue:
    model = SPEC_MODELS[workload_type]
    fields: dict[str, FieldInfo] = {}
    groups: set[str] = set()
    _walk(model, "", fields=fields, groups=groups, stack=())
    return _Catalogue(fields=types.MappingProxyType(fields), groups=frozenset(groups))


def catalogue(workload_type: WorkloadType) -> Mapping[str, FieldInfo]:
    """The policy-able fields of a workload type, by dotted camelCase path (cached, read-only)."""
    return _catalogue(workload_type).fields


def group_paths(workload_type: WorkloadType) -> frozenset[str]:
    """Paths of the nested models of a workload type: they hold fields but take no rules."""
    return _catalogue(workload_type).groups
