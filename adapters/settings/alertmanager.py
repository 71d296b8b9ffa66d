"""The ``adapters.alertmanager`` section."""

from pydantic import Field

from adapters.settings.base import ApiConfig


class AlertmanagerConfig(ApiConfig):
    """The ``adapters.alertmanager`` section: base URL, headers and what may be silenced."""

    # label name -> value globs a silence may match, e.g. {alertname: ["Demo*"], service: ["*"]}
    allow_matchers: dict[str, list[str]] = Field(default_factory=dict)
    allow_regex: bool = False
    allow_negative: bool = False
    created_by: str = Field(default="opsgate", min_length=1, max_length=100)
