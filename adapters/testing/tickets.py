"""Local stand-ins for GitHub Issues and Jira Cloud: the calls the ``ticket`` tool makes.

:class:`FakeGitHub` implements, for the repositories it knows:

- ``POST /repos/{o}/{r}/issues`` -> 201 with ``number``, ``html_url``, ``state``; 422
  ``{"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "title",
  "code": "missing_field"}], "documentation_url"}`` without a title;
- ``POST /repos/{o}/{r}/issues/{n}/comments`` -> 201; ``PATCH /repos/{o}/{r}/issues/{n}`` with
  ``state`` -> 200 (closing a closed issue is allowed and changes nothing);
- 401 ``{"message": "Bad credentials"}`` without ``Authorization: Bearer <token>``, 404
  ``{"message": "Not Found"}`` for an unknown repository or issue.

:class:`FakeJira` implements Jira Cloud REST API v3 with basic auth (``email:api token``):

- ``POST /rest/api/3/issue`` -> 201 ``{"id", "key", "self"}``; 400 ``{"errorMessages": [],
  "errors": {"summary": "You must specify a summary of the issue."}}``; the description must
  be an ADF document (``{"type": "doc", "version": 1, ...}``), as v3 requires;
- ``POST /rest/api/3/issue/{key}/comment`` (ADF ``body``) -> 201;
- ``GET /rest/api/3/issue/{key}?fields=status``, ``GET .../transitions`` and ``POST
  .../transitions`` with ``{"transition": {"id"}}`` -> 204 (a workflow To Do -> In Progress
  -> Done; a transition not offered from the current status is a 400);
- 401 without valid credentials, 404 ``{"errorMessages": ["Issue does not exist or you do not
  have permission to see it."], "errors": {}}``.
"""

import base64
import hmac
import itertools
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DOCS = "https://docs.github.com/rest/issues/issues"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@dataclass
class FakeGitHub:
    """GitHub's Issues REST API for ``repos``, in memory."""

    token: str = "ghp_test0123456789abcdefghij"  # noqa: S105 - the stand-in's own test token
    repos: frozenset[str] = frozenset({"acme/ops"})
    issues: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    comments: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> str:
        """Serve on an ephemeral port; returns the base URL."""
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/issues", self._create)
        app.router.add_post("/repos/{owner}/{repo}/issues/{number}/comments", self._comment)
        app.router.add_patch("/repos/{owner}/{repo}/issues/{number}", self._update)
        self._runner, self.base_url = await _serve(app)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path, dict(request.headers)))
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return web.json_response(
                {"message": "Bad credentials", "documentation_url": DOCS}, status=401
            )
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if repo not in self.repos:
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS}, status=404
            )
        return None

    def _issue(self, request: web.Request) -> tuple[str, int] | None:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        try:
            key = (repo, int(request.match_info["number"]))
        except ValueError:
            return None
        return key if key in self.issues else None

    async def _create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await _json(request) or {}
        if not isinstance(body.get("title"), str) or not body["title"]:
            return web.json_response(
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                    "documentation_url": DOCS,
                },
                status=422,
            )
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        number = next(self._numbers)
        issue = {
            "number": number,
            "title": body["title"],
            "body": body.get("body") or "",
            "labels": [{"name": n} for n in body.get("labels") or []],
            "state": "open",
            "html_url": f"https://github.com/{repo}/issues/{number}",
        }
        self.issues[(repo, number)] = issue
        self.comments[(repo, number)] = []
        return web.json_response(issue, status=201)

    async def _comment(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        key = self._issue(request)
        if key is None:
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS}, status=404
            )
        body = await _json(request) or {}
        if not isinstance(body.get("body"), str) or not body["body"]:
            return web.json_response(
                {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "IssueComment", "field": "body", "code": "missing_field"}
                    ],
                    "documentation_url": DOCS,
                },
                status=422,
            )
        self.comments[key].append(body["body"])
        comment_id = len(self.comments[key])
        url = f"{self.issues[key]['html_url']}#issuecomment-{comment_id}"
        return web.json_response(
            {"id": comment_id, "body": body["body"], "html_url": url}, status=201
        )

    async def _update(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        key = self._issue(request)
        if key is None:
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS}, status=404
            )
        body = await _json(request) or {}
        state = body.get("state")
        if state not in (None, "open", "closed"):
            return web.json_response(
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "state", "code": "invalid"}],
                    "documentation_url": DOCS,
                },
                status=422,
            )
        if state is not None:
            self.issues[key]["state"] = state
        return web.json_response(self.issues[key])


# Jira's default software workflow: status -> transitions offered from it (id, to, category).
_WORKFLOW = {
    "To Do": [("11", "In Progress", "indeterminate"), ("31", "Done", "done")],
    "In Progress": [("21", "To Do", "new"), ("31", "Done", "done")],
    "Done": [("41", "To Do", "new")],
}
_CATEGORY = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
_NO_ISSUE = "Issue does not exist or you do not have permission to see it."
_NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."


def _is_adf(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(value.get("content"), list)
    )


@dataclass
class FakeJira:
    """Jira Cloud's REST API v3 (issues, comments, transitions) for ``projects``, in memory."""

    email: str = "bot@example.com"
    token: str = "jira-test-token-0123456789"  # noqa: S105 - the stand-in's own test token
    projects: frozenset[str] = frozenset({"OPS"})
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> str:
        """Serve on an ephemeral port; returns the base URL."""
        app = web.Application()
        app.router.add_post("/rest/api/3/issue", self._create)
        app.router.add_get("/rest/api/3/issue/{key}", self._get)
        app.router.add_post("/rest/api/3/issue/{key}/comment", self._comment)
        app.router.add_get("/rest/api/3/issue/{key}/transitions", self._transitions)
        app.router.add_post("/rest/api/3/issue/{key}/transitions", self._transition)
        self._runner, self.base_url = await _serve(app)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), expected.encode()
        ):
            return web.json_response(
                {
                    "errorMessages": [_NOT_AUTHENTICATED],
                    "errors": {},
                },
                status=401,
            )
        if (
            request.match_info.get("key") is not None
            and request.match_info["key"] not in self.issues
        ):
            return web.json_response({"errorMessages": [_NO_ISSUE], "errors": {}}, status=404)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        fields = (await _json(request) or {}).get("fields")
        fields = fields if isinstance(fields, dict) else {}
        errors: dict[str, str] = {}
        project = (fields.get("project") or {}).get("key")
        if project not in self.projects:
            errors["project"] = "valid project is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if not (fields.get("issuetype") or {}).get("name"):
            errors["issuetype"] = "Specify an issue type"
        if "description" in fields and not _is_adf(fields["description"]):
            errors["description"] = (
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            )
        if errors:
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        number = next(self._numbers)
        key = f"{project}-{number}"
        self.issues[key] = {
            "id": str(10000 + number),
            "key": key,
            "fields": {**fields, "status": "To Do"},
        }
        self.comments[key] = []
        return web.json_response(
            {
                "id": str(10000 + number),
                "key": key,
                "self": f"{self.base_url}/rest/api/3/issue/{10000 + number}",
            },
            status=201,
        )

    async def _get(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        issue = self.issues[request.match_info["key"]]
        status = issue["fields"]["status"]
        return web.json_response(
            {
                "id": issue["id"],
                "key": issue["key"],
                "fields": {
                    "status": {"name": status, "statusCategory": {"key": _CATEGORY[status]}}
                },
            }
        )

    async def _comment(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = (await _json(request) or {}).get("body")
        if not _is_adf(body):
            return web.json_response(
                {"errorMessages": [], "errors": {"comment": "Comment body is not valid ADF."}},
                status=400,
            )
        key = request.match_info["key"]
        comment = {"id": str(len(self.comments[key]) + 1), "body": body}
        self.comments[key].append(comment)
        return web.json_response(comment, status=201)

    async def _transitions(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        status = self.issues[request.match_info["key"]]["fields"]["status"]
        return web.json_response(
            {
                "transitions": [
                    {"id": tid, "name": to, "to": {"name": to, "statusCategory": {"key": cat}}}
                    for tid, to, cat in _WORKFLOW[status]
                ]
            }
        )

    async def _transition(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        issue = self.issues[request.match_info["key"]]
        wanted = ((await _json(request) or {}).get("transition") or {}).get("id")
        for tid, to, _cat in _WORKFLOW[issue["fields"]["status"]]:
            if tid == wanted:
                issue["fields"]["status"] = to
                return web.Response(status=204)
        return web.json_response(
            {
                "errorMessages": [f"Transition id '{wanted}' is not valid for this issue."],
                "errors": {},
            },
            status=400,
        )

    def text_of(self, document: dict[str, Any]) -> str:
        """The plain text of an ADF document (paragraphs by blank lines)."""
        paragraphs = []
        for paragraph in document.get("content", []):
            parts = [
                "\n" if node.get("type") == "hardBreak" else node.get("text", "")
                for node in paragraph.get("content", [])
            ]
            paragraphs.append("".join(parts))
        return "\n\n".join(paragraphs)
