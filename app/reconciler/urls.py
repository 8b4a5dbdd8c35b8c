"""Where a researcher reaches an interactive or inference workload: pure, no I/O.

:func:`workload_urls` reads the workload's Services as observed in the cluster: every port of a
Service with a cluster IP is reachable in-cluster at ``<service>.<namespace>.svc:<port>``; a
NodePort (or LoadBalancer) Service's ports on every node at their ``nodePort``; and a
LoadBalancer's at the address the cloud assigned, once ``status.loadBalancer`` shows one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Url = dict[str, Any]

# The workload types whose ports are meant to be reached (SPEC §4); a distributed job's
# headless Service is for its own pods.
WITH_URLS = frozenset({"interactive", "inference"})
_SCHEMES = {"http": "http", "https": "https", "grpc": "grpc", "h2c": "http"}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _url(
    service_type: str, port: Mapping[str, Any], *, host: str | None, number: Any
) -> Url | None:
    if not isinstance(number, int):
        return None
    scheme = _SCHEMES.get(str(port.get("appProtocol") or "http").lower(), "http")
    return {
        "type": service_type,
        "name": str(port.get("name") or ""),
        "host": host,
        "port": number,
        "url": f"{scheme}://{host}:{number}" if host else None,
    }


def workload_urls(workload_type: str, objects: Sequence[Mapping[str, Any]]) -> list[Url]:
    """The workload's addresses: in-cluster first, then NodePorts, then LoadBalancers."""
    if workload_type not in WITH_URLS:
        return []
    found: dict[str, list[Url | None]] = {"ClusterIP": [], "NodePort": [], "LoadBalancer": []}
    for obj in objects:
        if obj.get("kind") != "Service":
            continue
        meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
        service_type = str(spec.get("type") or "ClusterIP")
        ports = [_mapping(p) for p in spec.get("ports") or ()]
        if spec.get("clusterIP") not in (None, "", "None"):
            host = f"{meta.get('name')}.{meta.get('namespace')}.svc"
            for port in ports:
                found["ClusterIP"].append(
                    _url("ClusterIP", port, host=host, number=port.get("port"))
                )
        if service_type in ("NodePort", "LoadBalancer"):
            for port in ports:
                found["NodePort"].append(
                    _url("NodePort", port, host=None, number=port.get("nodePort"))
                )
        if service_type == "LoadBalancer":
            ingress = _mapping(obj.get("status")).get("loadBalancer") or {}
            for entry in _mapping(ingress).get("ingress") or ():
                address = _mapping(entry).get("ip") or _mapping(entry).get("hostname")
                if address:
                    for port in ports:
                        found["LoadBalancer"].append(
                            _url("LoadBalancer", port, host=str(address), number=port.get("port"))
                        )
    return [u for urls in found.values() for u in urls if u is not None]
