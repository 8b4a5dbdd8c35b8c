"""Who is calling: a role and, below admin, the projects it may see (pure; no FastAPI, no SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from app.errors import Forbidden

Role = Literal["viewer", "researcher", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
# Each role can do everything the roles before it can, within its projects.
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``name`` is for people (audit, ``updatedBy``); ``id`` is stable and unique across token
    kinds ("admin", "token:<uuid>", "oidc:<sub>") and scopes idempotency keys and rate limits.
    ``projects`` maps the names of the projects it may see to their ids, as they were when the
    credential was read; what it may reach is decided by id (``app.sql.scope``), so a project
    deleted and created again under the same name is another project, out of its scope. Admins
    see every project and have none.
    """

    name: str
    role: Role
    id: str = ""
    projects: Mapping[str, uuid.UUID] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def at_least(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def sees(self, project: str) -> bool:
        """Whether a project of this name may exist for this principal at all (out of scope
        reads as 404); its id decides in the end, when the project is read."""
        return self.is_admin or project in self.projects

    def require(self, role: Role, action: str) -> None:
        """403 unless the role suffices; call it only after the target proved visible."""
        if not self.at_least(role):
            if role == "admin":
                raise Forbidden(f"Only an administrator may {action}.")
            raise Forbidden(f"The {self.role} role may not {action}.")


# The caller of work done outside any request (the CLI); audit entries name it.
SYSTEM = Principal(name="system", role="admin", id="system")
