"""The ``adapters.prometheus`` section."""

from adapters.settings.base import ApiConfig


class PrometheusConfig(ApiConfig):
    """The ``adapters.prometheus`` section: the server's base URL and optional headers."""
