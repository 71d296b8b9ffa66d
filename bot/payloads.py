"""The shape of every Slack payload opsgate accepts, checked before Bolt sees it.

One pydantic model per payload type (slash command, block actions, view submission and close,
shortcuts, block suggestions, Events API callbacks, the URL handshake, rate-limit notices). The
models are strict: a value must already have the JSON type Slack sends, because the checked dict
itself, not a coerced copy, goes on to Bolt and the listeners. Besides what opsgate's listeners
read, each model types the fields Bolt's request parsing subscripts (``user``, ``channel``,
``team``, ``enterprise``, ``authorizations``, ``event``, ``view``, ``response_urls``...), so
nothing in a signed body can make Bolt raise. Unknown extra fields are ignored, as Slack adds
fields over time.
"""

from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_ACTIONS = 25  # Slack's limit of elements in one actions block


class Kind(StrEnum):
    """Every payload type opsgate accepts (and the metrics label of each)."""

    COMMAND = "command"
    SSL_CHECK = "ssl_check"
    BLOCK_ACTIONS = "block_actions"
    VIEW_SUBMISSION = "view_submission"
    VIEW_CLOSED = "view_closed"
    SHORTCUT = "shortcut"
    MESSAGE_ACTION = "message_action"
    BLOCK_SUGGESTION = "block_suggestion"
    EVENT_CALLBACK = "event_callback"
    URL_VERIFICATION = "url_verification"
    APP_RATE_LIMITED = "app_rate_limited"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class Ref(_Strict):
    """An object Slack names by id (team, channel, enterprise)."""

    id: str | None = None


class UserRef(Ref):
    """The acting user of an interaction: its id is required."""

    id: str


class ResponseUrl(_Strict):
    """One entry of ``response_urls`` (modals with ``response_url_enabled``)."""

    response_url: str | None = None


class FunctionData(_Strict):
    """``function_data`` of a custom-step interaction."""

    execution_id: str | None = None
    inputs: dict[str, Any] | None = None


class ViewRef(_Strict):
    """The fields of a ``view`` that Bolt's team lookup reads."""

    app_installed_team_id: str | None = None
    team_id: str | None = None


class Envelope(_Strict):
    """The fields Bolt's context builder reads from any payload (and, recursively, from the
    ``event``, ``message``, ``previous_message``, ``item`` and ``assistant_thread`` in it)."""

    enterprise: str | Ref | None = None
    enterprise_id: str | None = None
    team: str | Ref | None = None
    team_id: str | None = None
    user: str | Ref | None = None
    user_id: str | None = None
    channel: str | Ref | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    event_id: str | None = None
    response_url: str | None = None
    response_urls: list[ResponseUrl] = Field(default_factory=list)  # Bolt takes len() if present
    authorizations: list["Envelope"] | None = None
    event: "Envelope | None" = None
    message: "Envelope | None" = None
    previous_message: "Envelope | None" = None
    item: "Envelope | None" = None
    assistant_thread: "Envelope | None" = None
    function_execution_id: str | None = None
    function_data: FunctionData | None = None
    bot_access_token: str | None = None
    view: ViewRef | None = None


class SlashCommand(Envelope):
    """A slash command (form fields; every value a string)."""

    command: str
    text: str = ""
    user_id: str
    channel_id: str


class SslCheck(Envelope):
    """Slack's periodic check of the endpoint's certificate (form fields)."""

    ssl_check: Literal["1"]


class _Interaction(Envelope):
    user: UserRef
    channel: Ref | None = None
    trigger_id: str | None = None


class Action(_Strict):
    """One element of ``actions``: Bolt matches on ``action_id``; buttons carry ``value``."""

    action_id: str
    block_id: str | None = None
    value: str | None = None


class BlockActions(_Interaction):
    """A click on an interactive element of a message or view."""

    type: Literal["block_actions"]
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)


class ElementState(_Strict):
    """The state of one input element; text inputs carry ``value``."""

    value: str | None = None


class ViewState(_Strict):
    """``view.state``: block id -> action id -> element state."""

    values: dict[str, dict[str, ElementState]] = Field(default_factory=dict)


class View(ViewRef):
    """A modal as Slack sends it back."""

    type: str
    callback_id: str
    id: str | None = None
    private_metadata: str = ""
    state: ViewState | None = None


class ViewSubmission(_Interaction):
    """A modal submitted."""

    type: Literal["view_submission"]
    view: View  # narrower than Envelope.view, as Slack sends it


class ViewClosed(_Interaction):
    """A modal closed (sent only with ``notify_on_close``)."""

    type: Literal["view_closed"]
    view: View


class Shortcut(_Interaction):
    """A global shortcut."""

    type: Literal["shortcut"]
    callback_id: str
    trigger_id: str


class MessageAction(_Interaction):
    """A message shortcut."""

    type: Literal["message_action"]
    callback_id: str
    trigger_id: str


class BlockSuggestion(_Interaction):
    """An external select menu asking for options."""

    type: Literal["block_suggestion"]
    action_id: str
    block_id: str | None = None
    value: str | None = None


class Event(Envelope):
    """The ``event`` of an Events API callback."""

    type: str
    subtype: str | None = None
    text: str | None = None
    bot_id: str | None = None
    channel_type: str | None = None
    ts: str | None = None


class EventCallback(Envelope):
    """An Events API delivery."""

    type: Literal["event_callback"]
    event: Event  # required here, and it must have a type
    event_id: str


class UrlVerification(Envelope):
    """The Events API URL handshake (answered by Bolt with the challenge)."""

    type: Literal["url_verification"]
    challenge: str


class AppRateLimited(Envelope):
    """Slack telling the app it exceeded the Events API rate limit."""

    type: Literal["app_rate_limited"]
    minute_rate_limited: int | None = None


Interactivity = Annotated[
    Union[  # noqa: UP007 - a discriminated union is spelled with Union in Annotated
        BlockActions, ViewSubmission, ViewClosed, Shortcut, MessageAction, BlockSuggestion
    ],
    Field(discriminator="type"),
]
EventsApi = Annotated[
    Union[EventCallback, UrlVerification, AppRateLimited],  # noqa: UP007
    Field(discriminator="type"),
]


class _InteractivityBody(_Strict):
    payload: Interactivity


class _EventsBody(_Strict):
    payload: EventsApi


def listener_of(model: BaseModel) -> tuple[str, str] | None:
    """(surface, name) a listener must be registered under to take ``model`` (``LISTENED``'s
    keys, or "kinds"/"notices" for payloads opsgate has no listeners for at all); None for
    what Bolt's own middleware answers."""
    named: tuple[str, str] | None = None
    if isinstance(model, SlashCommand):
        named = ("commands", model.command)
    elif isinstance(model, BlockActions):
        named = ("actions", model.actions[0].action_id)
    elif isinstance(model, ViewSubmission):
        named = ("views", model.view.callback_id)
    elif isinstance(model, EventCallback):
        named = ("events", model.event.type)
    elif isinstance(model, AppRateLimited):
        named = ("notices", "app_rate_limited")
    elif not isinstance(model, UrlVerification | SslCheck):
        named = ("kinds", str(getattr(model, "type", "unknown")))
    return named


class Malformed(ValueError):
    """A body that is not a payload opsgate accepts; ``reason`` says why, in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _first_error(exc: ValidationError, *, skip: int = 0) -> str:
    error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in error["loc"][skip:]) or "body"
    return f"{where}: {error['msg']}"[:200]


def form_kind(fields: dict[str, str]) -> tuple[Kind, BaseModel]:
    """The kind and checked model of a form body without ``payload``."""
    model: type[Envelope]
    if "command" in fields:  # checked as a command even with ssl_check (Bolt acks that first)
        kind, model = Kind.COMMAND, SlashCommand
    elif "ssl_check" in fields:
        kind, model = Kind.SSL_CHECK, SslCheck
    else:
        raise Malformed("a form body needs a command or a payload field")
    try:
        return kind, model.model_validate(fields)
    except ValidationError as exc:
        raise Malformed(_first_error(exc)) from None


def interactivity_kind(payload: Any) -> tuple[Kind, BaseModel]:
    """The kind and checked model of an interactivity ``payload=`` document."""
    return _tagged(_InteractivityBody, payload, what="payload")


def events_kind(document: Any) -> tuple[Kind, BaseModel]:
    """The kind and checked model of an Events API JSON body."""
    return _tagged(_EventsBody, document, what="body")


def _tagged(wrapper: type[BaseModel], document: Any, *, what: str) -> tuple[Kind, BaseModel]:
    if not isinstance(document, dict):
        raise Malformed(f"the {what} must be a JSON object")
    kind = document.get("type")
    if not isinstance(kind, str):
        raise Malformed(f"the {what} has no type")
    try:
        checked = wrapper.model_validate({"payload": document})
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "union_tag_invalid":
            raise Malformed(f"opsgate takes no {what} of this type") from None
        raise Malformed(_first_error(exc, skip=2)) from None
    model: BaseModel = checked.payload  # type: ignore[attr-defined]
    return Kind(model.type), model  # type: ignore[attr-defined]
