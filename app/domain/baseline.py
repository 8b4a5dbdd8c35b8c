"""Safe defaults: what a workload may not hold unless a policy allows it (``allowUnsafe``).

The model is Kubernetes' Pod Security Standards, *baseline* profile, which refuses "known
privilege escalations": of what a Runplane spec can express, host paths and AppArmor profiles
other than the runtime's or the node's own. (Host namespaces, privileged containers, added
capabilities, host ports, sysctls and seccomp or SELinux overrides cannot be written in a spec
at all, so they need no check.) Beyond the profile, two things only cluster operators should do:
the ``system-*`` priority classes, which Kubernetes keeps for the components the cluster needs,
and a toleration with no key, which tolerates every taint (control-plane nodes, nodes being
drained or failing). Pure: the policy engine applies these checks, the field catalogue offers
``allowUnsafe`` on exactly these fields, and ``GET /explain`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ALLOW_UNSAFE = "allowUnsafe"
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True, slots=True)
class Check:
    """One safe default: the field of the common spec it concerns, what of a value it refuses
    (None when nothing), and why (for the 422 and for explain)."""

    field: str
    refused: Callable[[Any], Any]
    message: str


def _host_paths(value: Any) -> Any:
    return value if isinstance(value, list) and value else None


def _system_class(value: Any) -> Any:
    return value if isinstance(value, str) and value.startswith("system-") else None


def _every_taint(value: Any) -> Any:
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, Mapping) and not item.get("key")] or None


def _apparmor(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return None
    refused = {
        key: profile
        for key, profile in value.items()
        if str(key).startswith(APPARMOR_ANNOTATION_PREFIX)
        and not (profile == "runtime/default" or str(profile).startswith("localhost/"))
    }
    return refused or None


CHECKS: tuple[Check, ...] = (
    Check(
        "storage.hostPath",
        _host_paths,
        "host paths are refused by default: they expose the node's own files to the workload "
        "(Pod Security Standards, baseline)",
    ),
    Check(
        "priorityClass",
        _system_class,
        "system-* priority classes are refused by default: Kubernetes keeps them for the "
        "components the cluster needs to run",
    ),
    Check(
        "tolerations",
        _every_taint,
        "a toleration without a key is refused by default: it tolerates every taint, so the "
        "pods may land on control-plane nodes and on nodes being drained or failing",
    ),
    Check(
        "annotations",
        _apparmor,
        "AppArmor profiles other than runtime/default and localhost/* are refused by default "
        "(Pod Security Standards, baseline)",
    ),
)

# The spec objects that hold a common spec: the spec itself and a distributed master's.
_ROOTS = ("", "masterSpec.")
_BY_FIELD = {root + check.field: check for root in _ROOTS for check in CHECKS}


def check_at(path: str) -> Check | None:
    """The safe default that guards a spec field (``tolerations``, ``masterSpec.tolerations``)."""
    return _BY_FIELD.get(path)


def explanation(check: Check) -> str:
    return f'{check.message}; the policy rule {{"{ALLOW_UNSAFE}": true}} on the field allows it'


def refusal(check: Check, path: str) -> str:
    return (
        f'{check.message}; an administrator may allow it with the policy rule {{"{ALLOW_UNSAFE}": '
        f"true}} on {path}"
    )
