"""A stand-in Kubernetes API server for tests: what the real one does for the calls opsgate makes.

:class:`KubeApiStandIn` is an aiohttp server on an ephemeral port. It serves Deployments (get,
list, patch, the ``scale`` subresource), ReplicaSets (list, for ``rollout undo``), Pods (list,
``log``), Events (list) and the TokenRequest subresource of ServiceAccounts, and enforces what
the API server enforces for them:

- **authentication**: a bearer token must be a static token it was given or a token it minted
  that has not expired and names its audience; anything else is ``401 Unauthorized``.
- **authorization**: RBAC-style, from a table of :class:`PolicyRule` per user
  (``system:serviceaccount:<ns>:<sa>``); a request no rule allows is ``403 Forbidden`` with the
  API server's message (``deployments.apps "web" is forbidden: User "..." cannot patch resource
  "deployments" in API group "apps" in the namespace "shop"``).
- **errors** are ``Status`` objects (``kind: Status``, ``status: Failure``, ``reason``, ``code``,
  ``details``), as the real server sends them: 404 ``NotFound``, 422 ``Invalid``, 415, 400.
- **TokenRequest** validates ``spec.expirationSeconds`` as the real server does (at least 600,
  at most 2^32: anything else is a 422 naming the field) and caps it at ``max_token_s`` (the
  server's ``--service-account-max-token-expiration``); the answer's
  ``status.expirationTimestamp`` is what holds.
- **dryRun=All** runs validation and admission and answers with the object as it would be,
  changing nothing; any other value of ``dryRun`` is a 400.
- a tiny deployment controller: a changed pod template makes a new ReplicaSet revision (or
  brings back the ReplicaSet whose template matches, as the real controller does on undo).

Every request is recorded in :attr:`KubeApiStandIn.requests` with the user and token that made
it, so a test can tell which credential did what. A test that needs a write in flight sets
:attr:`KubeApiStandIn.hold`: real (not dry-run) writes then wait for it before the server
looks at them (authentication included: a token that expires meanwhile is refused), and
:attr:`KubeApiStandIn.holding` is set while one waits. Time comes from a :class:`common.Clock`, so a
test expires tokens by moving a FakeClock.
"""

import asyncio
import copy
import fnmatch
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from common import Clock, SystemClock

MIN_TOKEN_S = 600  # the API server refuses shorter TokenRequests (validation.go)
MAX_TOKEN_S = 1 << 32
DEFAULT_AUDIENCE = "https://kubernetes.default.svc"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass(frozen=True)
class PolicyRule:
    """One rule of a Role bound in ``namespace``: verbs on resources of one API group."""

    namespace: str
    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    api_group: str = ""
    resource_names: tuple[str, ...] = ()

    def allows(self, *, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        """Whether this rule covers the request (``*`` matches any verb or resource)."""
        if namespace != self.namespace or group != self.api_group:
            return False
        if not any(v in ("*", verb) for v in self.verbs):
            return False
        if not any(fnmatch.fnmatchcase(resource, r) for r in self.resources):
            return False
        return not self.resource_names or name in self.resource_names


@dataclass(frozen=True)
class Recorded:
    """One request the stand-in answered."""

    method: str
    path: str
    user: str | None
    token: str | None
    verb: str
    resource: str
    group: str
    namespace: str
    name: str
    dry_run: bool
    status: int
    body: Any = None


@dataclass
class _Minted:
    user: str
    expires_at: datetime
    audiences: tuple[str, ...]


@dataclass
class _State:
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    service_accounts: set[tuple[str, str]] = field(default_factory=set)


def service_account_user(namespace: str, name: str) -> str:
    """The user name a service account's token authenticates as."""
    return f"system:serviceaccount:{namespace}:{name}"


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` object as the API server sends it for a failure."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class _Refused(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.body = body


def _qualified(resource: str, group: str) -> str:
    base = resource.split("/", 1)[0]
    return f"{base}.{group}" if group else base


def _not_found(resource: str, group: str, name: str) -> _Refused:
    details = {"name": name, "kind": resource.split("/", 1)[0]}
    if group:
        details["group"] = group
    return _Refused(
        status_body(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', details)
    )


def _invalid(
    *, kind: str, group: str, name: str, field_path: str, value: Any, why: str
) -> _Refused:
    cause = f"Invalid value: {json.dumps(value)}: {why}"
    return _Refused(
        status_body(
            422,
            "Invalid",
            f'{kind}.{group} "{name}" is invalid: {field_path}: {cause}'
            if group
            else f'{kind} "{name}" is invalid: {field_path}: {cause}',
            {
                "name": name,
                "group": group,
                "kind": kind,
                "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field_path}],
            },
        )
    )


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (strategic merge patches opsgate sends only touch maps)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(target: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace``/``remove``/``test`` on maps (what ``rollout undo`` sends)."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError("each JSON patch operation needs op and path")
        _apply_op(doc, op)
    return doc


def _apply_op(doc: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = _pointer(str(op["path"]))
    node: Any = doc
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"path {op['path']} does not exist")
        node = node[part]
    if not isinstance(node, dict):
        raise ValueError(f"path {op['path']} is not in an object")
    kind = op["op"]
    if kind in ("replace", "remove", "test") and last not in node:
        raise ValueError(f"{kind}: path {op['path']} does not exist")
    if kind in ("add", "replace"):
        node[last] = copy.deepcopy(op.get("value"))
    elif kind == "remove":
        del node[last]
    elif kind == "test":
        if node[last] != op.get("value"):
            raise ValueError(f"test failed at {op['path']}")
    else:
        raise ValueError(f"unsupported JSON patch operation {kind!r}")


def _template_hash(template: dict[str, Any]) -> str:
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:10]


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b`` and ``a`` (exists)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key) == value:
                return False
            continue
        key, sep, value = term.partition("=")
        if (sep and labels.get(key) != value.lstrip("=")) or (not sep and key not in labels):
            return False
    return True


class KubeApiStandIn:
    """A local Kubernetes API server for the calls opsgate makes; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,),
        max_token_s: int = 48 * 3600,
    ) -> None:
        """Serve on an ephemeral port once :meth:`start` is awaited."""
        self.clock = clock or SystemClock()
        self.audiences = audiences
        self.max_token_s = max_token_s
        self.requests: list[Recorded] = []
        self._state = _State()
        self._static: dict[str, str] = {}
        self._minted: dict[str, _Minted] = {}
        self._rules: dict[str, list[PolicyRule]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.hold: asyncio.Event | None = None  # when set, real writes wait for it
        self.holding = asyncio.Event()  # set once a real write waits on ``hold``

    # --- seeding -------------------------------------------------------------------------

    def add_static_token(self, token: str, user: str) -> None:
        """Accept ``token`` as ``user`` (a long-lived credential, e.g. a legacy SA secret)."""
        self._static[token] = user

    def add_service_account(self, namespace: str, name: str) -> str:
        """Create a service account; returns the user name its tokens authenticate as."""
        self._state.service_accounts.add((namespace, name))
        return service_account_user(namespace, name)

    def allow(self, user: str, *rules: PolicyRule) -> None:
        """Bind ``rules`` to ``user`` (a Role plus RoleBinding per rule's namespace)."""
        self._rules.setdefault(user, []).extend(rules)

    @property
    def rules(self) -> dict[str, tuple[PolicyRule, ...]]:
        """The RBAC table: every user's rules, as :meth:`allow` bound them."""
        return {user: tuple(rules) for user, rules in self._rules.items()}

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 1,
        image: str = "registry.local/app:1",
        labels: dict[str, str] | None = None,
    ) -> None:
        """Create a deployment at revision 1 with its ReplicaSet."""
        labels = labels or {"app": name}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": secrets.token_hex(8),
                "generation": 1,
                "resourceVersion": "1",
                "annotations": {},
                "labels": dict(labels),
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": name, "image": image}]},
                },
            },
            "status": {},
        }
        self._rollout(deployment)
        self._state.deployments[namespace, name] = deployment

    def add_pod(
        self, namespace: str, name: str, *, labels: dict[str, str], log: str = "", phase: str = ""
    ) -> None:
        """Create a running pod with ``log`` as its container's output."""
        self._state.pods[namespace, name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"containers": [{"name": "main", "image": "registry.local/app:1"}]},
            "status": {"phase": phase or "Running"},
        }
        self._state.logs[namespace, name] = log

    def add_event(self, namespace: str, *, involved: str, reason: str, message: str) -> None:
        """Record an event about the object named ``involved``."""
        self._state.events.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{involved}.{len(self._state.events)}",
                    "namespace": namespace,
                },
                "involvedObject": {"name": involved, "namespace": namespace},
                "reason": reason,
                "message": message,
                "type": "Warning",
            }
        )

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """The stored deployment (a copy)."""
        return copy.deepcopy(self._state.deployments[namespace, name])

    def replicasets(self, namespace: str) -> list[dict[str, Any]]:
        """The stored ReplicaSets of ``namespace`` (copies)."""
        return [
            copy.deepcopy(rs) for (ns, _), rs in self._state.replicasets.items() if ns == namespace
        ]

    def token_expiry(self, token: str) -> datetime | None:
        """When a minted token expires (None: not minted here)."""
        minted = self._minted.get(token)
        return minted.expires_at if minted else None

    def writes(self) -> list[Recorded]:
        """The requests that changed or would change state (dry runs included)."""
        return [
            r for r in self.requests if r.verb in ("patch", "create", "update") and r.status < 400
        ]

    # --- server --------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on 127.0.0.1 on a free port; returns the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "KubeApiStandIn":
        """Start serving."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop serving."""
        await self.close()

    # --- request handling ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.hold is not None and request.method == "PATCH" and "dryRun" not in request.query:
            self.holding.set()  # held before the server looks at it, as if still in transit
            await self.hold.wait()
        route = _route(request.method, request.path)
        token = _bearer(request)
        user = self._authenticate(token)
        dry = request.query.get("dryRun")
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "user": user,
            "token": token,
            "verb": route.verb if route else "",
            "resource": route.resource if route else "",
            "group": route.group if route else "",
            "namespace": route.namespace if route else "",
            "name": route.name if route else "",
            "dry_run": dry == "All",
        }
        try:
            if user is None:
                raise _Refused(status_body(401, "Unauthorized", "Unauthorized"))
            if route is None:
                raise _Refused(
                    status_body(404, "NotFound", "the server could not find the requested resource")
                )
            if dry is not None and dry != "All":
                raise _Refused(
                    status_body(
                        400,
                        "BadRequest",
                        f'dryRun: Unsupported value: "{dry}": supported values: "All"',
                    )
                )
            self._authorize(user, route)
            body = await request.read()
            status, answer = self._serve(route, request, body, dry_run=dry == "All")
        except _Refused as refused:
            self.requests.append(Recorded(**record, status=refused.body["code"], body=refused.body))
            return _json_response(refused.body, status=refused.body["code"])
        self.requests.append(Recorded(**record, status=status, body=answer))
        if isinstance(answer, str):
            return web.Response(text=answer, status=status, content_type="text/plain")
        return _json_response(answer, status=status)

    def _authenticate(self, token: str | None) -> str | None:
        if token is None:
            return None
        if token in self._static:
            return self._static[token]
        minted = self._minted.get(token)
        if minted is None or self.clock.now() >= minted.expires_at:
            return None
        if not set(minted.audiences) & set(self.audiences):
            return None  # a token for another audience does not authenticate here
        return minted.user

    def _authorize(self, user: str, route: "_Route") -> None:
        rules = self._rules.get(user, [])
        if any(
            rule.allows(
                verb=route.verb,
                group=route.group,
                resource=route.resource,
                namespace=route.namespace,
                name=route.name,
            )
            for rule in rules
        ):
            return
        what = _qualified(route.resource, route.group)
        subject = f'{what} "{route.name}"' if route.name else what
        message = (
            f'{subject} is forbidden: User "{user}" cannot {route.verb} resource '
            f'"{route.resource}" in API group "{route.group}" in the namespace "{route.namespace}"'
        )
        details: dict[str, Any] = {"kind": route.resource.split("/", 1)[0]}
        if route.name:
            details["name"] = route.name
        if route.group:
            details["group"] = route.group
        raise _Refused(status_body(403, "Forbidden", message, details))

    def _serve(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        handlers = {
            "serviceaccounts/token": self._token_request,
            "deployments": self._deployments,
            "deployments/scale": self._scale,
            "replicasets": self._replicasets,
            "pods": self._pods,
            "pods/log": self._pod_log,
            "events": self._events,
        }
        return handlers[route.resource](route, request, body, dry_run=dry_run)

    def _deployments(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        if route.verb == "list":
            items = [d for (ns, _), d in self._state.deployments.items() if ns == route.namespace]
            return 200, _list("DeploymentList", "apps/v1", items)
        key = (route.namespace, route.name)
        deployment = self._deployment(key)
        if route.verb == "get":
            return 200, deployment
        self._writable(route)
        patched = self._patched(request, body, deployment)
        return 200, self._store_deployment(key, deployment, patched, dry_run=dry_run)

    def _scale(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        key = (route.namespace, route.name)
        deployment = self._deployment(key)
        scale = _scale_of(deployment)
        if route.verb == "get":
            return 200, scale
        self._writable(route)
        replicas = self._patched(request, body, scale).get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _invalid(
                kind="Scale",
                group="autoscaling",
                name=route.name,
                field_path="spec.replicas",
                value=replicas,
                why="must be greater than or equal to 0",
            )
        patched = _merge(deployment, {"spec": {"replicas": replicas}})
        stored = self._store_deployment(key, deployment, patched, dry_run=dry_run)
        return 200, _scale_of(stored)

    def _replicasets(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        self._readable(route, "list")
        selector = request.query.get("labelSelector", "")
        items = [
            rs
            for (ns, _), rs in self._state.replicasets.items()
            if ns == route.namespace and _selector_matches(selector, rs["metadata"]["labels"])
        ]
        return 200, _list("ReplicaSetList", "apps/v1", items)

    def _pods(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        if route.verb == "get":
            pod = self._state.pods.get((route.namespace, route.name))
            if pod is None:
                raise _not_found("pods", "", route.name)
            return 200, copy.deepcopy(pod)
        self._readable(route, "list")
        selector = request.query.get("labelSelector", "")
        items = [
            pod
            for (ns, _), pod in self._state.pods.items()
            if ns == route.namespace and _selector_matches(selector, pod["metadata"]["labels"])
        ]
        return 200, _list("PodList", "v1", items)

    def _pod_log(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        self._readable(route, "get")
        key = (route.namespace, route.name)
        if key not in self._state.pods:
            raise _not_found("pods", "", route.name)
        lines = self._state.logs[key].splitlines(keepends=True)
        tail = request.query.get("tailLines")
        if tail is not None and tail.isdigit():
            lines = lines[-int(tail) :] if int(tail) else []
        return 200, "".join(lines)

    def _events(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        self._readable(route, "list")
        wanted = request.query.get("fieldSelector", "")
        name = wanted.partition("involvedObject.name=")[2].split(",")[0]
        items = [
            e
            for e in self._state.events
            if e["metadata"]["namespace"] == route.namespace
            and (not name or e["involvedObject"]["name"] == name)
        ]
        return 200, _list("EventList", "v1", items)

    @staticmethod
    def _readable(route: "_Route", verb: str) -> None:
        if route.verb != verb:
            raise _Refused(
                status_body(405, "MethodNotAllowed", "the server does not allow this method")
            )

    @staticmethod
    def _writable(route: "_Route") -> None:
        if route.verb != "patch":
            raise _Refused(
                status_body(405, "MethodNotAllowed", "the server does not allow this method")
            )

    def _deployment(self, key: tuple[str, str]) -> dict[str, Any]:
        found = self._state.deployments.get(key)
        if found is None:
            raise _not_found("deployments", "apps", key[1])
        return copy.deepcopy(found)

    @staticmethod
    def _patched(request: web.Request, body: bytes, current: dict[str, Any]) -> dict[str, Any]:
        media = request.content_type
        try:
            patch = json.loads(body or b"null")
        except ValueError:
            raise _Refused(
                status_body(400, "BadRequest", "the request body is not valid JSON")
            ) from None
        try:
            if media == JSON_PATCH:
                return _json_patch(current, patch)
            if media in MERGE_PATCHES:
                if not isinstance(patch, dict):
                    raise ValueError("a merge patch is a JSON object")
                merged: dict[str, Any] = _merge(current, patch)
                return merged
        except ValueError as exc:
            raise _Refused(
                status_body(422, "Invalid", f"the patch could not be applied: {exc}")
            ) from None
        raise _Refused(
            status_body(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f'include: {JSON_PATCH}, {", ".join(MERGE_PATCHES)}; got "{media}"',
            )
        )

    def _store_deployment(
        self,
        key: tuple[str, str],
        before: dict[str, Any],
        after: dict[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        after["metadata"]["name"], after["metadata"]["namespace"] = key[1], key[0]
        replicas = after.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _invalid(
                kind="Deployment",
                group="apps",
                name=key[1],
                field_path="spec.replicas",
                value=replicas,
                why="must be greater than or equal to 0",
            )
        if after["spec"] != before["spec"]:
            after["metadata"]["generation"] = before["metadata"]["generation"] + 1
        if dry_run:
            return after  # validated and admitted, never stored
        after["metadata"]["resourceVersion"] = str(int(before["metadata"]["resourceVersion"]) + 1)
        if after["spec"]["template"] != before["spec"]["template"]:
            self._rollout(after)
        after["status"] = {
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
        }
        self._state.deployments[key] = after
        return copy.deepcopy(after)

    def _rollout(self, deployment: dict[str, Any]) -> None:
        """The deployment controller: the template's ReplicaSet becomes the newest revision."""
        meta = deployment["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        template = deployment["spec"]["template"]
        digest = _template_hash(template)
        owned = [
            rs
            for (ns, _), rs in self._state.replicasets.items()
            if ns == namespace and rs["metadata"]["ownerReferences"][0]["name"] == name
        ]
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0)
        rs_name = f"{name}-{digest}"
        existing = self._state.replicasets.get((namespace, rs_name))
        if existing is None:
            labels = {**template.get("metadata", {}).get("labels", {}), HASH_LABEL: digest}
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = dict(labels)
            existing = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": name,
                            "uid": meta["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "replicas": deployment["spec"]["replicas"],
                    "selector": {"matchLabels": dict(labels)},
                    "template": rs_template,
                },
            }
            self._state.replicasets[namespace, rs_name] = existing
        # The template's ReplicaSet (new, or an old one brought back by an undo) is the newest.
        revision = str(top + 1)
        existing["metadata"]["annotations"][REVISION] = revision
        meta.setdefault("annotations", {})[REVISION] = revision

    def _token_request(
        self, route: "_Route", request: web.Request, body: bytes, *, dry_run: bool
    ) -> tuple[int, Any]:
        self._readable(route, "create")
        if (route.namespace, route.name) not in self._state.service_accounts:
            raise _not_found("serviceaccounts", "", route.name)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise _Refused(
                status_body(400, "BadRequest", "the request body is not valid JSON")
            ) from None
        spec = request.get("spec") or {}
        seconds = spec.get("expirationSeconds", 3600)
        if not isinstance(seconds, int) or seconds < MIN_TOKEN_S:
            raise _invalid(
                kind="TokenRequest",
                group="authentication.k8s.io",
                name=route.name,
                field_path="spec.expirationSeconds",
                value=seconds,
                why="may not specify a duration less than 10 minutes",
            )
        if seconds > MAX_TOKEN_S:
            raise _invalid(
                kind="TokenRequest",
                group="authentication.k8s.io",
                name=route.name,
                field_path="spec.expirationSeconds",
                value=seconds,
                why="may not specify a duration larger than 2^32 seconds",
            )
        audiences = tuple(spec.get("audiences") or self.audiences)
        granted = min(seconds, self.max_token_s)
        expires = self.clock.now() + timedelta(seconds=granted)
        token = "kst-" + secrets.token_urlsafe(24)
        if not dry_run:
            self._minted[token] = _Minted(
                user=service_account_user(route.namespace, route.name),
                expires_at=expires,
                audiences=audiences,
            )
        return 201, {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": route.name, "namespace": route.namespace},
            "spec": {"audiences": list(audiences), "expirationSeconds": granted},
            "status": {
                "token": "" if dry_run else token,
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }


@dataclass(frozen=True)
class _Route:
    verb: str
    group: str
    resource: str
    namespace: str
    name: str


_VERBS = {"GET": "get", "PATCH": "patch", "POST": "create", "PUT": "update", "DELETE": "delete"}


def _route(method: str, path: str) -> _Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:3] == ["apis", "apps", "v1"]:
        group, rest = "apps", parts[3:]
    else:
        return None
    if len(rest) < 3 or rest[0] != "namespaces":
        return None
    namespace, resource, tail = rest[1], rest[2], rest[3:]
    verb = _VERBS.get(method)
    if verb is None or len(tail) > 2:
        return None
    if not tail:
        return _Route("list" if verb == "get" else verb, group, resource, namespace, "")
    name = tail[0]
    if len(tail) == 2:
        resource = f"{resource}/{tail[1]}"
    known = {
        "apps": {"deployments", "deployments/scale", "replicasets"},
        "": {"pods", "pods/log", "events", "serviceaccounts/token"},
    }
    if resource not in known[group]:
        return None
    return _Route(verb, group, resource, namespace, name)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _json_response(body: Any, *, status: int) -> web.Response:
    # The API server says exactly "application/json", without a charset; clients rely on it.
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _list(kind: str, api_version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": api_version, "metadata": {}, "items": items}


def _scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = deployment["metadata"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {
            "replicas": deployment.get("status", {}).get(
                "replicas", deployment["spec"]["replicas"]
            ),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }
