"""Validators and the base model shared by several adapters' settings."""

from pydantic import BaseModel, ConfigDict, Field, field_validator
from yarl import URL

from common.redaction import SECRET_REF


def require_secret_ref(value: str, *, example: str) -> str:
    """``value`` when it is exactly one ``${secret:NAME}`` reference; else ValueError."""
    if not SECRET_REF.fullmatch(value.strip()):
        raise ValueError(f"write it as a secret reference like ${{secret:{example}}}")
    return value.strip()


def normalise_base_url(value: str) -> str:
    """``value`` without a trailing slash; ValueError unless it is an http(s) URL with a host."""
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError("credentials in the URL are not allowed")
    return value.rstrip("/")


class ApiConfig(BaseModel):
    """Settings every HTTP API adapter takes: where the service is and how to reach it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)  # values may be ${secret:NAME}
    timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    cost_per_call_usd: float = Field(default=0.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("must be an http or https URL with a host, like http://127.0.0.1:9090")
        if url.user is not None or url.password is not None:
            raise ValueError("credentials in the URL are not allowed; put them in headers")
        if url.query_string or url.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")
