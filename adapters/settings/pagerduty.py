"""The ``adapters.pagerduty`` section: API URL, token reference and From email."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.settings.base import normalise_base_url, require_secret_ref


class PagerDutyConfig(BaseModel):
    """The ``adapters.pagerduty`` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    api_url: str = "https://api.pagerduty.com"
    token: str  # ${secret:NAME}
    # A PagerDuty user's email: the API requires it (From) and records every write as theirs.
    from_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    timeout_s: float = Field(default=10.0, gt=0)
    cost_per_call_usd: float = Field(default=0.0, ge=0)

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        return require_secret_ref(value, example="PAGERDUTY_TOKEN")

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_base_url(value)
