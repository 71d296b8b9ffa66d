"""The Web API methods the sandbox implements, as plain functions over a `Workspace`.

Each handler takes the call's arguments (already merged from query, form or JSON body) and
returns the response body without `"ok"`, or raises `ApiError` carrying Slack's error code.
Handlers register themselves in `METHODS` with `@method(...)` when their module is imported,
which this package does for all of them:

- `base`: the registry, `ApiError`, `Context` and the argument helpers.
- `auth`: `auth.test`.
- `apps`: `apps.connections.open` (Socket Mode; app-level tokens only).
- `chat`: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `chat.getPermalink`.
- `views`: `views.open`, `views.push`, `views.update`.
- `conversations`: `users.info`, `usergroups.users.list` and `conversations.*`.
- `files`: `files.upload` (retired) and the v2 upload flow.
"""

from bot.sandbox.methods.apps import APP_LEVEL_METHODS, SOCKET_PATH, apps_connections_open
from bot.sandbox.methods.auth import auth_test
from bot.sandbox.methods.base import METHODS, ApiError, Context, Handler, method
from bot.sandbox.methods.chat import (
    chat_get_permalink,
    chat_post_ephemeral,
    chat_post_message,
    chat_update,
)
from bot.sandbox.methods.conversations import (
    conversations_history,
    conversations_info,
    conversations_list,
    conversations_members,
    conversations_replies,
    usergroups_users_list,
    users_info,
)
from bot.sandbox.methods.files import (
    files_complete_upload,
    files_get_upload_url,
    files_upload,
)
from bot.sandbox.methods.views import views_open, views_push, views_update

__all__ = [
    "APP_LEVEL_METHODS",
    "METHODS",
    "SOCKET_PATH",
    "ApiError",
    "Context",
    "Handler",
    "apps_connections_open",
    "auth_test",
    "chat_get_permalink",
    "chat_post_ephemeral",
    "chat_post_message",
    "chat_update",
    "conversations_history",
    "conversations_info",
    "conversations_list",
    "conversations_members",
    "conversations_replies",
    "files_complete_upload",
    "files_get_upload_url",
    "files_upload",
    "method",
    "usergroups_users_list",
    "users_info",
    "views_open",
    "views_push",
    "views_update",
]
