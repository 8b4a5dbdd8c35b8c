"""Node pool response models."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.schemas import ApiModel, Page


class Capacity(ApiModel):
    allocatable: float = Field(description="What the pool's nodes offer to pods.")
    allocated: float = Field(description="What the pods Runplane placed there hold.")
    free: float = Field(description="Allocatable less allocated (never below 0).")


class NodePool(ApiModel):
    name: str = Field(description="The nodes' node-pool label (`default` for nodes without).")
    nodes: int
    gpu: Capacity = Field(description="GPUs.")
    cpu: Capacity = Field(description="CPU cores.")
    memory: Capacity = Field(description="Memory, in bytes.")
    updated_at: datetime = Field(description="When the reconciler last saw it change.")


class NodePoolPage(Page[NodePool]):
    pass
