"""Kubernetes name, label and quantity syntax, as the API server checks it.

Each ``*_problem`` function returns ``None`` when the value is valid, else a short message in the
API server's words, so that :mod:`app.rendering.common` (refusing a submission) and
:mod:`app.rendering.validation` (validating a rendered object) say the same thing.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from app.domain.quantity import is_quantity, quantity_value

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024  # bytes, keys and values together (TotalAnnotationSizeLimitB)
STATEFULSET_NAME_MAX = 52  # the controller-revision-hash label is "<name>-<10 chars>" <= 63

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

# Container resources the API server knows without a domain prefix (the rest must be
# "<domain>/<name>" extended resources).
STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def dns1123_label_problem(value: str, max_len: int = DNS1123_LABEL_MAX) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"must be no more than {max_len} characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            "must consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character (a DNS-1123 label)"
        )
    return None


def dns1035_label_problem(value: str, max_len: int = DNS1123_LABEL_MAX) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"must be no more than {max_len} characters"
    if not _DNS1035_LABEL.fullmatch(value):
        return (
            "must consist of lower case alphanumeric characters or '-', start with an alphabetic "
            "character, and end with an alphanumeric character (a DNS-1035 label)"
        )
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            "must consist of lower case alphanumeric characters, '-' or '.', and must start and "
            "end with an alphanumeric character (a DNS-1123 subdomain)"
        )
    return None


def qualified_name_problem(key: str) -> str | None:
    """A label or annotation key: ``[prefix/]name`` (``IsQualifiedName``)."""
    if not key:
        return "must not be empty"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "prefix part must not be empty"
        problem = dns1123_subdomain_problem(prefix)
        if problem:
            return f"prefix part {problem}"
        if prefix.count("/"):
            return "must have at most one '/'"
    if not name:
        return "name part must not be empty"
    if len(name) > QUALIFIED_NAME_MAX:
        return f"name part must be no more than {QUALIFIED_NAME_MAX} characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return None


def label_value_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > LABEL_VALUE_MAX:
        return f"must be no more than {LABEL_VALUE_MAX} characters"
    if not _LABEL_VALUE.fullmatch(value):
        return (
            "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def port_name_problem(value: str) -> str | None:
    """An IANA service name (``IsValidPortName``): what container and Service ports are named."""
    if not value or len(value) > 15:
        return "must be 1 to 15 characters"
    if not _IANA_SVC_NAME.fullmatch(value):
        return "must contain only lower case alphanumeric characters and '-'"
    if not any(c.isalpha() for c in value):
        return "must contain at least one letter"
    if "--" in value or value.startswith("-") or value.endswith("-"):
        return "must not begin or end with '-' nor contain '--'"
    return None


def env_name_problem(value: str) -> str | None:
    if not value or not _ENV_NAME.fullmatch(value):
        return (
            "must consist of alphabetic characters, digits, '_', '-', or '.', and must not "
            "start with a digit"
        )
    return None


def uuid_problem(value: str) -> str | None:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return "must be a UUID"
    return None


def quantity_problem(value: object) -> str | None:
    """A resource quantity as rendered: a non-negative Kubernetes quantity string or integer."""
    if isinstance(value, bool):
        return "must be a quantity"
    if isinstance(value, int) and value < 0:
        return "must not be negative"
    if not isinstance(value, int) and not is_quantity(value):
        return f"{value!r} is not a Kubernetes quantity"
    try:
        quantity_value(value)  # within what Kubernetes represents
    except ValueError as exc:
        return str(exc)
    return None


def resource_name_problem(value: str) -> str | None:
    """A container resource name: a standard one, ``hugepages-<size>``, or ``<domain>/<name>``."""
    if value in STANDARD_CONTAINER_RESOURCES:
        return None
    if value.startswith("hugepages-"):
        return None if is_quantity(value[len("hugepages-") :]) else "has an invalid page size"
    problem = qualified_name_problem(value)
    if problem:
        return problem
    if "/" not in value:
        return (
            "must be a standard resource (cpu, memory...) or a fully-qualified name (domain/name)"
        )
    domain = value.split("/", 1)[0]
    if domain == "kubernetes.io" or domain.endswith(".kubernetes.io"):
        return "must not be in the kubernetes.io domain"
    return None


def is_standard_resource(name: str) -> bool:
    """Overcommittable resources: requests may be below limits (extended ones may not)."""
    return name in STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-")


# --- rendering numbers as quantities ---


def cpu_quantity(cores: float) -> str:
    """Cores as the API server would canonicalise them: ``0.5`` -> ``500m``, ``2.0`` -> ``2``."""
    millis = int((Decimal(str(cores)) * 1000).to_integral_value())
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def decimal_quantity(value: float) -> str:
    """A positive metric target as a quantity, to the milli-unit, never rounded down to zero."""
    millis = max(1, int((Decimal(str(value)) * 1000).to_integral_value()))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
