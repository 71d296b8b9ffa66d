"""The ``adapters.ticket`` section: one backend, GitHub Issues or Jira Cloud."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.settings.base import normalise_base_url, require_secret_ref

_REPO = r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$"


class GitHubBackend(BaseModel):
    """``adapters.ticket.github``: the repository issues are filed in."""

    model_config = ConfigDict(extra="forbid")
    api_url: str = "https://api.github.com"
    repo: str = Field(pattern=_REPO)
    token: str

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        return require_secret_ref(value, example="GITHUB_TOKEN")

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_base_url(value)


class JiraBackend(BaseModel):
    """``adapters.ticket.jira``: the site, project and account issues are filed with."""

    model_config = ConfigDict(extra="forbid")
    base_url: str  # https://your-site.atlassian.net
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,20}$")
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    token: str
    issue_type: str = "Task"
    done_status: str = "Done"  # close moves the issue to the transition reaching this status

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        return require_secret_ref(value, example="JIRA_API_TOKEN")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return normalise_base_url(value)


class TicketConfig(BaseModel):
    """The ``adapters.ticket`` section of the config file."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["github", "jira"]
    github: GitHubBackend | None = None
    jira: JiraBackend | None = None
    labels: list[str] = Field(default_factory=list)  # added to every ticket created
    timeout_s: float = Field(default=10.0, gt=0)
    cost_per_call_usd: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _backend_given(self) -> "TicketConfig":
        if getattr(self, self.backend) is None:
            raise ValueError(f"backend is {self.backend}: add the {self.backend} section")
        return self
