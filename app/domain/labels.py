"""The labels and annotations Runplane puts on what it renders, and those of the schedulers it
works with: one definition each, for the renderers that write them and the backends and status
derivation that read them."""

from __future__ import annotations

RUNPLANE_DOMAIN = "runplane.io"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "runplane"
# What the cluster backends list by: every object and pod Runplane manages.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
WORKLOAD_ID_LABEL = "runplane.io/workload-id"
PROJECT_LABEL = "runplane.io/project"
WORKLOAD_TYPE_LABEL = "runplane.io/workload-type"
WORKLOAD_NAME_LABEL = "runplane.io/workload-name"
ROLE_LABEL = "runplane.io/role"

KAI_SCHEDULER_NAME = "kai-scheduler"
KAI_QUEUE_LABEL = "kai.scheduler/queue"
KAI_PREEMPTIBILITY_LABEL = "kai.scheduler/preemptibility"
KAI_GPU_FRACTION_ANNOTATION = "gpu-fraction"
KAI_GPU_MEMORY_ANNOTATION = "gpu-memory"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

GPU_RESOURCE = "nvidia.com/gpu"
