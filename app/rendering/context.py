"""What a workload is rendered from: the stored workload, its resolved spec and the settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.domain.spec import WorkloadType

Scheduler = Literal["none", "kai", "kueue"]
SCHEDULERS: tuple[Scheduler, ...] = ("none", "kai", "kueue")

DEFAULT_NODE_POOL_LABEL_KEY = "runplane.io/node-pool"
DEFAULT_NODE_TYPE_LABEL_KEY = "runplane.io/node-type"


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    """One workload to render.

    ``spec`` is the resolved camelCase spec (``model_dump(exclude_none=True, by_alias=True)``
    after the policy's defaults); any field may be absent. The renderer never mutates it and the
    manifests it returns share no mutable objects with it.
    """

    workload_id: str
    name: str
    project: str
    namespace: str
    workload_type: WorkloadType
    spec: Mapping[str, Any]
    scheduler: Scheduler = "none"
    # The project's scheduler queue (KAI Queue or Kueue LocalQueue); None means the project name.
    queue: str | None = None
    # Render the stopped form: replicas 0 (StatefulSet, Deployment) or suspend (Job, Kubeflow).
    stopped: bool = False
    # Settings (RenderSettings): node labels that nodePools / nodeType select on, and whether
    # PyTorch renders natively (Indexed Job + headless Service) instead of as a PyTorchJob.
    node_pool_label_key: str = DEFAULT_NODE_POOL_LABEL_KEY
    node_type_label_key: str = DEFAULT_NODE_TYPE_LABEL_KEY
    pytorch_native: bool = False
    # Path of the inference readiness probe when servingPort.protocol is http.
    inference_probe_path: str = "/"

    @property
    def effective_queue(self) -> str:
        return self.queue if self.queue else self.project
