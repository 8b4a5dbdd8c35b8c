"""A workload's phases (SPEC §5) and the phases a user may ask for."""

from __future__ import annotations

from typing import Literal, get_args

Phase = Literal[
    "Creating",
    "Pending",
    "Initializing",
    "Running",
    "Degraded",
    "Stopping",
    "Stopped",
    "Resuming",
    "Completed",
    "Failed",
    "Deleting",
    "Deleted",
    "Unknown",
]
PHASES: tuple[Phase, ...] = get_args(Phase)
DesiredPhase = Literal["Running", "Stopped", "Deleted"]
Finished = Literal["Completed", "Failed"]
# Phases after which nothing in the cluster changes by itself.
FINAL_PHASES: frozenset[str] = frozenset({"Completed", "Failed", "Deleted"})
