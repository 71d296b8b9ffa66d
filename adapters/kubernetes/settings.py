"""Arguments of the ``kubernetes`` actions and the ``adapters.kubernetes`` settings."""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.redaction import SECRET_REF

# RFC 1123 labels and subdomains: what the API server accepts as namespace and object names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LABEL_KEY = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
WRITE_ACTIONS = ("rollout_restart", "scale", "rollout_undo")
WriteAction = Literal["rollout_restart", "scale", "rollout_undo"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(pattern=DNS_LABEL)


class GetArgs(_Args):
    """Arguments of ``kubernetes.get``: one object by ``name``, or a list by ``labels``."""

    kind: Literal["pods", "deployments", "events"]
    name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN)
    labels: dict[str, str] = Field(default_factory=dict)
    limit: int = Field(default=50, ge=1, le=500)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.fullmatch(LABEL_KEY, key) or not re.fullmatch(LABEL_VALUE, item):
                raise ValueError(f"{key}={item} is not a valid label selector term")
        return value


class LogsArgs(_Args):
    """Arguments of ``kubernetes.logs``: the last ``tail_lines`` of a pod's container."""

    pod: str = Field(pattern=DNS_SUBDOMAIN)
    container: str | None = Field(default=None, pattern=DNS_LABEL)
    tail_lines: int = Field(default=100, ge=1, le=5000)


class RestartArgs(_Args):
    """Arguments of ``kubernetes.rollout_restart`` (a deployment)."""

    name: str = Field(pattern=DNS_SUBDOMAIN)


class ScaleArgs(_Args):
    """Arguments of ``kubernetes.scale``: the deployment and its new replica count."""

    name: str = Field(pattern=DNS_SUBDOMAIN)
    replicas: int = Field(ge=0, le=1000)


class UndoArgs(_Args):
    """Arguments of ``kubernetes.rollout_undo``; ``to_revision`` 0 means the previous one."""

    name: str = Field(pattern=DNS_SUBDOMAIN)
    to_revision: int = Field(default=0, ge=0)


class KubernetesConfig(BaseModel):
    """The ``adapters.kubernetes`` section of the config file.

    ``read_token`` (for get and logs) and ``minting_token`` (which may only create tokens for
    the service accounts in ``service_accounts``) must be ``${secret:NAME}`` references.
    """

    model_config = ConfigDict(extra="forbid")

    server: str = Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    ca_file: str | None = None
    namespaces: list[str] = Field(min_length=1)
    read_token: str
    minting_token: str
    service_account_namespace: str = Field(default="opsgate", pattern=DNS_LABEL)
    service_accounts: dict[WriteAction, str]
    audiences: list[str] = Field(default_factory=lambda: ["https://kubernetes.default.svc"])
    timeout_s: float = Field(default=10.0, gt=0)
    cost_per_call_usd: float = Field(default=0.0, ge=0)

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(DNS_LABEL, item):
                raise ValueError(f"{item!r} is not a namespace name")
        return value

    @field_validator("read_token", "minting_token")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not SECRET_REF.fullmatch(value.strip()):
            raise ValueError(
                "must be a secret reference such as ${secret:K8S_READ_TOKEN}, never the token "
                "itself; give the value in OPSGATE_SECRET_<NAME> or OPSGATE_SECRETS_DIR"
            )
        return value.strip()

    @field_validator("service_accounts")
    @classmethod
    def _accounts(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [a for a in WRITE_ACTIONS if a not in value]
        if missing:
            raise ValueError(
                f"map every state-changing action to a service account; missing: {missing}"
            )
        for name in value.values():
            if not re.fullmatch(DNS_SUBDOMAIN, name):
                raise ValueError(f"{name!r} is not a service account name")
        return value
