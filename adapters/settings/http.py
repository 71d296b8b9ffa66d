"""The ``adapters.http`` section: allowed hosts, limits and the credentials the tool presents."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.credentials import CredentialSpec
from common import Role
from common.redaction import is_reference_only

IDEMPOTENCY_HEADER = "Idempotency-Key"


def normalise_host_pattern(pattern: str) -> str:
    """An ``allow_hosts`` entry in the form hosts are compared in; ValueError when malformed."""
    cleaned = pattern.strip().lower().rstrip(".")
    bare = cleaned.removeprefix("*.").strip("[]")
    # One colon means host:port; IPv6 literals have several.
    if not bare or "*" in bare or "/" in bare or bare.count(":") == 1:
        raise ValueError(
            f"allow_hosts entry {pattern!r} must be a host name or '*.domain', "
            "without scheme, port or path"
        )
    return f"*.{bare}" if cleaned.startswith("*.") else bare


class HttpCredential(BaseModel):
    """One credential the http tool presents: to which hosts, for which actions, who holds it.

    ``holders`` defaults to the Researcher and the Executor for a read-only credential (only
    ``get``) and to the Executor otherwise; ``[]`` makes it a credential no role holds, which
    humans add to one plan's scope at a time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[str] = Field(min_length=1)
    actions: list[str] = Field(default_factory=lambda: ["get", "post"], min_length=1)
    headers: dict[str, str] = Field(min_length=1)
    holders: list[Role] | None = None

    @field_validator("actions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"get", "post"})
        if unknown:
            raise ValueError(f"http has no action {', '.join(unknown)} (only get and post)")
        return value

    @field_validator("headers")
    @classmethod
    def _references(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not is_reference_only(text):
                raise ValueError(
                    f"header {name}: write the credential as a reference, like "
                    '"Bearer ${secret:API_TOKEN}", never the value itself'
                )
            if name.strip().lower() == IDEMPOTENCY_HEADER.lower():
                raise ValueError(f"opsgate sets the {IDEMPOTENCY_HEADER} header itself")
        return value

    def spec(self, name: str) -> CredentialSpec:
        """The credential as the control plane sees it (name ``http:<name>``)."""
        read_only = set(self.actions) == {"get"}
        default = {Role.RESEARCHER, Role.EXECUTOR} if read_only else {Role.EXECUTOR}
        holders = default if self.holders is None else set(self.holders)
        return CredentialSpec(
            name=f"http:{name}",
            read_only=read_only,
            holders=frozenset(holders),
            description=f"headers for {', '.join(self.hosts)} ({', '.join(self.actions)})",
        )


class HttpConfig(BaseModel):
    """The ``adapters.http`` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[str]
    timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=65536, ge=0)
    cost_per_call_usd: float = Field(default=0.0, ge=0)
    credentials: dict[str, HttpCredential] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _valid_credentials(cls, value: dict[str, HttpCredential]) -> dict[str, HttpCredential]:
        for name, credential in value.items():
            for pattern in credential.hosts:
                normalise_host_pattern(pattern)
            credential.spec(name)  # the role rules (adapters.credentials)
        return value
