"""Settings from the environment (pydantic-settings), cached by :func:`get_settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_ADMIN_TOKEN = "runplane-dev-admin-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNPLANE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    # No prefix: the conventional name every platform sets.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    database_pool_size: int = Field(default=10, ge=1)
    # How long a request waits for a database connection before answering 503.
    database_pool_timeout: float = Field(default=5.0, gt=0)
    data_dir: Path = Path(".data")
    admin_token: str | None = None
    cluster: Literal["simulated", "kubernetes"] = "simulated"
    cors_origins: Annotated[list[str], NoDecode] = []
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    # Request bodies larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Rendering (SPEC §6).
    scheduler: Literal["none", "kai", "kueue"] = "none"
    node_pool_label_key: str = "runplane.io/node-pool"
    node_type_label_key: str = "runplane.io/node-type"
    pytorch_native: bool = False

    # Reconciler (SPEC §5, §7).
    run_reconciler: bool = True
    reconcile_interval: float = Field(default=2.0, gt=0)
    # Every so often a cycle derives every workload's status, not only those that changed.
    resync_seconds: float = Field(default=300.0, gt=0)
    pending_timeout: float = Field(default=300.0, gt=0)
    # How long an object the cluster keeps refusing with a retryable error (5xx, a namespace
    # stuck terminating) is retried, backing off, before its workload fails with the reason.
    apply_retry_timeout: float = Field(default=600.0, gt=0)

    # Server-Sent Events (workload watches): a comment line this often keeps idle streams open.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)

    # The simulated cluster: NODESxGPUS, and how long pods take to start and to run.
    sim_nodes: str = Field(default="4x8", pattern=r"^\s*\d+\s*[xX]\s*\d+\s*$")
    sim_start_seconds: float = Field(default=5.0, ge=0)
    sim_run_seconds: float = Field(default=30.0, ge=0)

    # The kubernetes backend (kubeconfig from KUBECONFIG, or in-cluster).
    kube_create_namespaces: bool = True
    kube_qps: float = Field(default=50.0, gt=0)
    kube_burst: int = Field(default=100, ge=1)
    # How long each watch request lasts before the API server ends it and it is resumed.
    kube_watch_seconds: float = Field(default=300.0, ge=1)

    # Access control. Bearer JWTs are accepted when an issuer, an audience and a JWKS are set.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks_file: Path | None = None
    oidc_role_claim: str = "runplane_role"
    oidc_projects_claim: str = "runplane_projects"
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # Requests a minute per principal (per API process); unset means no limit.
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    # How long an API process trusts what it found out about an API token or a JWT: a token
    # revoked through another process stops working within this many seconds.
    credential_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    # Audit entries older than this are deleted by the active reconciler.
    audit_retention_days: float = Field(default=365.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, value: str | None) -> str | None:
        # Platforms hand out postgres:// URLs; SQLAlchemy would pick psycopg2 for them.
        if not value:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production" and (
            not self.admin_token or self.admin_token == DEV_ADMIN_TOKEN
        ):
            raise ValueError("RUNPLANE_ADMIN_TOKEN must be set to a secret in production")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer or self.oidc_audience:
            if not (self.oidc_issuer and self.oidc_audience):
                raise ValueError("RUNPLANE_OIDC_ISSUER and RUNPLANE_OIDC_AUDIENCE go together")
            if bool(self.oidc_jwks_url) == bool(self.oidc_jwks_file):
                raise ValueError(
                    "OIDC needs exactly one of RUNPLANE_OIDC_JWKS_URL and RUNPLANE_OIDC_JWKS_FILE"
                )
        return self

    @property
    def effective_admin_token(self) -> str:
        return self.admin_token or DEV_ADMIN_TOKEN


@lru_cache
def get_settings() -> Settings:
    return Settings()
