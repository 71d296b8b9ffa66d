"""Slack and alert-intake settings from the environment, checked before the app starts."""

import os
from dataclasses import dataclass

SLACK_API_DEFAULT = "https://slack.com/api/"
ALERT_TOKEN_VAR = "OPSGATE_ALERT_TOKEN"  # noqa: S105 - the variable name, not a value


class SettingsError(ValueError):
    """A required setting is missing or malformed; the message says what to set."""


def bot_token_problem(token: str) -> str | None:
    """What is wrong with ``SLACK_BOT_TOKEN``, or None; never repeats the value (a secret)."""
    if not token:
        return "SLACK_BOT_TOKEN must be set to the bot token (xoxb-...) from OAuth & Permissions"
    if not token.startswith("xoxb-"):
        kind = {"xoxp-": "a user token", "xapp-": "an app-level token"}.get(token[:5], "")
        return (
            "SLACK_BOT_TOKEN must start with xoxb- (the Bot User OAuth Token from "
            f"OAuth & Permissions){'; this looks like ' + kind if kind else ''}"
        )
    return None


@dataclass(frozen=True)
class SlackSettings:
    """Tokens, signing secret and Web API base URL (Slack's usual variable names), and the
    credential alert webhooks must present (``OPSGATE_ALERT_TOKEN``)."""

    bot_token: str
    signing_secret: str
    app_token: str | None
    api_url: str
    alert_token: str | None = None

    @classmethod
    def from_env(cls, *, socket_mode: bool = False) -> "SlackSettings":
        """Read and check ``SLACK_*`` and ``OPSGATE_SLACK_API_URL``."""
        token = os.environ.get("SLACK_BOT_TOKEN", "")
        secret = os.environ.get("SLACK_SIGNING_SECRET", "")
        app_token = os.environ.get("SLACK_APP_TOKEN") or None
        api_url = os.environ.get("OPSGATE_SLACK_API_URL", SLACK_API_DEFAULT)
        problems = []
        if (token_problem := bot_token_problem(token)) is not None:
            problems.append(token_problem)
        if not secret and not socket_mode:
            problems.append(
                "SLACK_SIGNING_SECRET must be set (Basic Information > App Credentials)"
            )
        if socket_mode and not app_token:
            problems.append(
                "--socket-mode needs SLACK_APP_TOKEN (xapp-..., Basic Information > "
                "App-Level Tokens, scope connections:write)"
            )
        elif socket_mode and not (app_token or "").startswith("xapp-"):
            problems.append(
                "SLACK_APP_TOKEN must start with xapp- (the app-level token from Basic "
                "Information > App-Level Tokens, not the bot token)"
            )
        if not api_url.startswith(("http://", "https://")):
            problems.append("OPSGATE_SLACK_API_URL must be an http(s) URL")
        if problems:
            raise SettingsError("; ".join(problems))
        return cls(
            bot_token=token,
            signing_secret=secret,
            app_token=app_token,
            api_url=api_url if api_url.endswith("/") else api_url + "/",
            alert_token=os.environ.get(ALERT_TOKEN_VAR) or None,
        )
