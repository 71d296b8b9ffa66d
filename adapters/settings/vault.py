"""The ``secrets.vault`` section: where ``${secret:vault:...}`` references are read."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.redaction import SECRET_REF

K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class VaultConfig(BaseModel):
    """The ``secrets.vault`` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    url: str
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: str | None = None  # auth: token; a ${secret:NAME} reference
    role_id: str | None = None  # auth: approle
    secret_id: str | None = None  # auth: approle; a ${secret:NAME} reference
    role: str | None = None  # auth: kubernetes, the Vault role bound to opsgate's account
    jwt_path: Path = Path(K8S_TOKEN_PATH)  # auth: kubernetes
    auth_mount: str | None = None  # default: "approle" or "kubernetes"
    mount: str = "secret"  # the KV v2 mount
    namespace: str | None = None  # Vault Enterprise namespace
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    ca_cert: Path | None = None  # verify Vault's TLS with this CA bundle (default: system)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the Vault address must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("token", "secret_id")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_REF.fullmatch(value):
            raise ValueError(
                "write it as a reference, like ${secret:VAULT_TOKEN}, never the value itself"
            )
        return value

    @model_validator(mode="after")
    def _auth_settings(self) -> "VaultConfig":
        needs = {"token": ("token",), "approle": ("role_id", "secret_id"), "kubernetes": ("role",)}
        absent = [name for name in needs[self.auth] if getattr(self, name) is None]
        if absent:
            raise ValueError(f"auth: {self.auth} needs {' and '.join(absent)}")
        return self
