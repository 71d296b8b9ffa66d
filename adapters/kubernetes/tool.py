"""The ``kubernetes`` tool itself: action specs, per-step tokens, dry runs and the API calls."""

import copy
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Event, Pod, ServiceAccount
from lightkube.types import PatchType
from pydantic import BaseModel

from adapters.base import ActionSpec, Grant, ToolCall, ToolResult, ToolSpec, parse_args
from adapters.credentials import report_issued
from adapters.errors import ErrorCode, GrantError, NamespaceNotAllowed, ToolFailed, ToolTimeout
from adapters.kubernetes.settings import (
    GetArgs,
    KubernetesConfig,
    LogsArgs,
    RestartArgs,
    ScaleArgs,
    UndoArgs,
)
from adapters.secrets import SecretSource, resolve_setting
from common import Clock, Risk, SystemClock
from common.redaction import register_secret

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
MIN_TOKEN_S = 600  # the TokenRequest API refuses shorter tokens with 422 Invalid
RETRYABLE_STATUS = frozenset({409, 429, 500, 502, 503, 504})
MAX_LOG_CHARS = 65536
UNAUTHORIZED_HINT = (
    " (the API server did not accept the step's token, which expired, was revoked or names "
    "another audience; this request changed nothing)"
)

# What each state-changing action's service account needs (documented in docs/kubernetes.md);
# reported in the audit of every token minted for it.
SCOPES: Mapping[str, dict[str, list[str]]] = {
    "rollout_restart": {"deployments": ["patch"]},
    "scale": {"deployments/scale": ["get", "patch"]},
    "rollout_undo": {"deployments": ["get", "patch"], "replicasets": ["list"]},
}


def _scale_back(args: Mapping[str, Any], result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The compensation of ``scale``: back to the replica count read before the change."""
    output = (result or {}).get("output") or {}
    previous = output.get("previous_replicas")
    if not isinstance(previous, int) or output.get("dry_run"):
        return None  # the scale never read a count (it failed before): nothing to restore
    return {"namespace": args["namespace"], "name": args["name"], "replicas": previous}


def _namespace_of(call: ToolCall) -> str:
    return str(call.args.get("namespace", "?"))


def _server_failed(result: ToolResult) -> bool:
    return not result.ok or (result.status is not None and result.status >= 500)


KUBERNETES_SPEC = ToolSpec(
    name="kubernetes",
    target_of=_namespace_of,
    failure_of=_server_failed,
    actions={
        "get": ActionSpec(
            name="get",
            args_model=GetArgs,
            risk=Risk.LOW,
            read_only=True,
            idempotent=True,
            description="read pods, deployments or events in an allow-listed namespace",
        ),
        "logs": ActionSpec(
            name="logs",
            args_model=LogsArgs,
            risk=Risk.LOW,
            read_only=True,
            idempotent=True,
            description="read the last lines of a pod's log",
        ),
        "rollout_restart": ActionSpec(
            name="rollout_restart",
            args_model=RestartArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=False,
            previews=True,
            description="restart a deployment's pods, as kubectl rollout restart",
        ),
        "scale": ActionSpec(
            name="scale",
            args_model=ScaleArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=True,
            compensation="scale",
            compensate_from=_scale_back,
            previews=True,
            description="set a deployment's replica count (undo: back to the count before)",
        ),
        "rollout_undo": ActionSpec(
            name="rollout_undo",
            args_model=UndoArgs,
            risk=Risk.MEDIUM,
            read_only=False,
            idempotent=False,
            previews=True,
            description="roll a deployment back to its previous revision, as kubectl rollout undo",
        ),
    },
)

Operation = Callable[[AsyncClient, BaseModel, bool], Awaitable[tuple[str, dict[str, Any]]]]


class KubernetesTool:
    """Calls the Kubernetes API of one cluster; see :mod:`adapters.kubernetes`."""

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        clock: Clock | None = None,
        secrets: SecretSource | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """Talk to ``config.server``; ``transport`` replaces the network (tests)."""
        self._config = config
        self._clock = clock or SystemClock()
        self._secrets = secrets or SecretSource()
        self._transport = transport
        self._namespaces = frozenset(config.namespaces)
        self._spec = dataclasses.replace(
            KUBERNETES_SPEC, cost_per_call_usd=config.cost_per_call_usd
        )
        self._ops: dict[str, Operation] = {
            "rollout_restart": self._restart,
            "scale": self._scale,
            "rollout_undo": self._undo,
        }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], *, clock: Clock | None = None) -> "KubernetesTool":
        """Build the tool from the ``adapters.kubernetes`` section; bad config -> ValueError."""
        return cls(KubernetesConfig.model_validate(dict(raw)), clock=clock)

    @property
    def spec(self) -> ToolSpec:
        """The ``kubernetes`` tool's actions."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run ``call``: reads with the read-only credential, writes with a token of their own."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args)
        self._check_namespace(str(getattr(args, "namespace", "")), call)
        started = time.perf_counter()
        if action.read_only:
            async with self._client(
                await resolve_setting(self._config.read_token, self._secrets)
            ) as client:
                summary, output = await self._read(client, args, call.action)
            return self._result(summary, output, started)
        token, fact = await self._mint(call, grant, purpose="call")
        try:
            async with self._client(token) as client:
                operation = self._ops[call.action]
                await operation(
                    client, args, True
                )  # the dry run first: nothing is sent if it fails
                summary, output = await operation(client, args, False)
        except ToolFailed as exc:
            exc.credentials = [fact]
            raise
        output["service_account"] = fact["service_account"]
        return self._result(summary, output, started, credentials=(fact,))

    async def preview(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """What a state-changing ``call`` would do, from a server-side dry run; changes nothing."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args)
        self._check_namespace(str(getattr(args, "namespace", "")), call)
        if action.read_only:
            raise ToolFailed(
                f"{call.tool_action} is read-only; it has nothing to preview", retryable=False
            )
        started = time.perf_counter()
        token, fact = await self._mint(call, grant, purpose="dry_run")
        try:
            async with self._client(token) as client:
                summary, output = await self._ops[call.action](client, args, True)
        except ToolFailed as exc:
            exc.credentials = [fact]
            raise
        return self._result(summary, output, started, credentials=(fact,))

    async def aclose(self) -> None:
        """Nothing is held between calls: each call opens and closes its own client."""

    # --- credentials -----------------------------------------------------------------------

    def _check_namespace(self, namespace: str, call: ToolCall) -> None:
        if namespace not in self._namespaces:
            raise NamespaceNotAllowed(
                f"{call.tool_action} refused: namespace {namespace!r} is not allowed for "
                f"kubernetes; allowed: {', '.join(sorted(self._namespaces))}"
            )

    async def _mint(
        self, call: ToolCall, grant: Grant | None, *, purpose: str
    ) -> tuple[str, dict[str, Any]]:
        """A bound token of the action's service account, expiring with ``grant``."""
        if grant is None:
            raise GrantError(
                f"{call.tool_action} changes state and needs a grant to mint its token",
                code=ErrorCode.GRANT_MISSING,
            )
        left = (grant.expires_at - self._clock.now()).total_seconds()
        if left <= 0:
            raise GrantError(
                f"grant {grant.grant_id} expired at {grant.expires_at.isoformat()}",
                code=ErrorCode.GRANT_EXPIRED,
            )
        # The API refuses less than 600 s (422); the token may outlive a shorter grant, but it
        # is used for this call only and never kept.
        requested = max(MIN_TOKEN_S, math.ceil(left))
        account = self._config.service_accounts[call.action]  # type: ignore[index]
        sa_namespace = self._config.service_account_namespace
        request = ServiceAccount.Token(
            metadata=ObjectMeta(name=account, namespace=sa_namespace),
            spec=TokenRequestSpec(
                audiences=list(self._config.audiences), expirationSeconds=requested
            ),
        )
        minter = await resolve_setting(self._config.minting_token, self._secrets)
        async with self._client(minter) as client:
            answer = await self._api(
                client.create(request, account, namespace=sa_namespace),
                what=f"minting a token for service account {sa_namespace}/{account}",
            )
        token = answer.status.token
        register_secret(token)
        expires = answer.status.expirationTimestamp
        fact = {
            "event": "credential_minted",
            "role": "executor",
            "purpose": purpose,
            "tool_action": call.tool_action,
            "idempotency_key": call.idempotency_key,
            "grant_id": grant.grant_id,
            "service_account": f"{sa_namespace}/{account}",
            "namespace": str(call.args.get("namespace", "")),
            "scope": SCOPES[call.action],
            "audiences": list(self._config.audiences),
            "requested_s": requested,
            "expires_at": expires.isoformat() if isinstance(expires, datetime) else str(expires),
            "grant_expires_at": grant.expires_at.isoformat(),
        }
        await report_issued(fact)  # recorded now, so a running step shows what it holds
        return token, fact

    @asynccontextmanager
    async def _client(self, token: str) -> AsyncIterator[AsyncClient]:
        config = KubeConfig.from_one(
            cluster=Cluster(server=self._config.server, certificate_auth=self._config.ca_file),
            user=User(token=token),
        )
        client = AsyncClient(
            config=config,
            timeout=httpx2.Timeout(self._config.timeout_s),
            trust_env=False,
            transport=self._transport,
            field_manager="opsgate",
        )
        try:
            yield client
        finally:
            await client.close()

    async def _api(self, awaitable: Awaitable[Any], *, what: str) -> Any:
        """Await one API call; map lightkube and transport errors at the adapter boundary."""
        try:
            return await awaitable
        except ApiError as exc:
            status = exc.status
            code = int(status.code or exc.response.status_code)
            hint = UNAUTHORIZED_HINT if code == 401 else ""
            raise ToolFailed(
                f"{what}: the API server answered {code} {status.reason}: {status.message}{hint}",
                retryable=code in RETRYABLE_STATUS,
            ) from exc
        except httpx2.TimeoutException as exc:
            raise ToolTimeout(f"{what}: no answer from {self._config.server} in time") from exc
        except httpx2.HTTPError as exc:
            raise ToolFailed(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _result(
        self,
        summary: str,
        output: dict[str, Any],
        started: float,
        *,
        credentials: tuple[dict[str, Any], ...] = (),
    ) -> ToolResult:
        return ToolResult(
            ok=True,
            status=int(output.get("status", 200)),
            output=output,
            summary=summary,
            duration_ms=(time.perf_counter() - started) * 1000,
            cost_usd=self._spec.cost_per_call_usd,
            credentials=credentials,
        )

    # --- reads -------------------------------------------------------------------------------

    async def _read(
        self, client: AsyncClient, args: BaseModel, action: str
    ) -> tuple[str, dict[str, Any]]:
        if isinstance(args, LogsArgs):
            lines: list[str] = []

            async def collect() -> None:
                async for line in client.log(
                    args.pod,
                    namespace=args.namespace,
                    container=args.container,
                    tail_lines=args.tail_lines,
                ):
                    lines.append(line)

            await self._api(collect(), what=f"reading the log of pod {args.namespace}/{args.pod}")
            text = "".join(lines)
            truncated = len(text) > MAX_LOG_CHARS
            body = text[-MAX_LOG_CHARS:]
            summary = f"log of {args.namespace}/{args.pod}: {len(lines)} lines"
            return summary, {
                "status": 200,
                "body": body,
                "lines": len(lines),
                "truncated": truncated,
            }
        assert isinstance(args, GetArgs), action
        resource: Any = {"pods": Pod, "deployments": Deployment, "events": Event}[args.kind]
        where = f"{args.kind} in {args.namespace}"
        if args.name is not None and args.kind != "events":
            obj = await self._api(
                client.get(resource, args.name, namespace=args.namespace), what=f"reading {where}"
            )
            item = _brief(args.kind, obj.to_dict())
            return f"{args.kind[:-1]} {args.namespace}/{args.name}: {_state(item)}", {
                "status": 200,
                "items": [item],
                "json": item,
            }
        about = args.name if args.kind == "events" else None
        fields: Any = {"involvedObject.name": about} if about else None
        labels: Any = args.labels or None

        async def listing() -> list[dict[str, Any]]:
            found = []
            async for obj in client.list(
                resource,
                namespace=args.namespace,
                labels=labels,
                fields=fields,
                chunk_size=args.limit,
            ):
                found.append(_brief(args.kind, obj.to_dict()))
                if len(found) >= args.limit:
                    break
            return found

        items = await self._api(listing(), what=f"listing {where}")
        return f"{len(items)} {args.kind} in {args.namespace}", {
            "status": 200,
            "items": items,
            "json": {"items": items},
        }

    # --- writes ------------------------------------------------------------------------------

    async def _restart(
        self, client: AsyncClient, args: BaseModel, dry_run: bool
    ) -> tuple[str, dict[str, Any]]:
        assert isinstance(args, RestartArgs)
        stamp = self._clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        where = f"deployment {args.namespace}/{args.name}"
        answer = await self._api(
            client.patch(
                Deployment,
                args.name,
                patch,
                namespace=args.namespace,
                patch_type=PatchType.STRATEGIC,
                dry_run=dry_run,
            ),
            what=f"{'dry run of ' if dry_run else ''}restarting {where}",
        )
        replicas = answer.spec.replicas
        verb = "would restart" if dry_run else "restarted"
        summary = f"{verb} {where}: its {replicas} pod(s) are replaced one by one"
        return summary, {
            "status": 200,
            "dry_run": dry_run,
            "namespace": args.namespace,
            "name": args.name,
            "restarted_at": stamp,
            "replicas": replicas,
            "generation": answer.metadata.generation,
        }

    async def _scale(
        self, client: AsyncClient, args: BaseModel, dry_run: bool
    ) -> tuple[str, dict[str, Any]]:
        assert isinstance(args, ScaleArgs)
        where = f"deployment {args.namespace}/{args.name}"
        current = await self._api(
            client.get(Deployment.Scale, args.name, namespace=args.namespace),
            what=f"reading the scale of {where}",
        )
        previous = current.spec.replicas
        answer = await self._api(
            client.patch(
                Deployment.Scale,
                args.name,
                {"spec": {"replicas": args.replicas}},
                namespace=args.namespace,
                patch_type=PatchType.MERGE,
                dry_run=dry_run,
            ),
            what=f"{'dry run of ' if dry_run else ''}scaling {where}",
        )
        verb = "would set" if dry_run else "set"
        summary = f"{verb} replicas of {where} {previous}→{answer.spec.replicas}"
        return summary, {
            "status": 200,
            "dry_run": dry_run,
            "namespace": args.namespace,
            "name": args.name,
            "previous_replicas": previous,
            "replicas": answer.spec.replicas,
        }

    async def _undo(
        self, client: AsyncClient, args: BaseModel, dry_run: bool
    ) -> tuple[str, dict[str, Any]]:
        """``kubectl rollout undo``: put back the pod template of an earlier ReplicaSet."""
        assert isinstance(args, UndoArgs)
        where = f"deployment {args.namespace}/{args.name}"
        deployment = await self._api(
            client.get(Deployment, args.name, namespace=args.namespace), what=f"reading {where}"
        )
        current = int((deployment.metadata.annotations or {}).get(REVISION, "0"))
        selector = dict(deployment.spec.selector.matchLabels or {})

        async def owned() -> list[Any]:
            found = []
            async for rs in client.list(ReplicaSet, namespace=args.namespace, labels=selector):
                owners = (rs.metadata.ownerReferences if rs.metadata else None) or []
                if any(o.controller and o.uid == deployment.metadata.uid for o in owners):
                    found.append(rs)
            return found

        history = await self._api(owned(), what=f"listing the ReplicaSets of {where}")
        by_revision = {
            int((rs.metadata.annotations or {}).get(REVISION, "0")): rs for rs in history
        }
        wanted = args.to_revision or max((r for r in by_revision if r < current), default=0)
        target = by_revision.get(wanted)
        if target is None or wanted == 0:
            raise ToolFailed(
                f"{where} has no revision {args.to_revision or 'before ' + str(current)} to roll "
                f"back to (known revisions: {sorted(by_revision) or 'none'})",
                retryable=False,
            )
        if wanted == current:
            return f"{where} already runs revision {current}; nothing to undo", {
                "status": 200,
                "dry_run": dry_run,
                "namespace": args.namespace,
                "name": args.name,
                "from_revision": current,
                "to_revision": wanted,
                "skipped": True,
            }
        template = copy.deepcopy(target.spec.template.to_dict())
        template.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        ops = [{"op": "replace", "path": "/spec/template", "value": template}]
        await self._api(
            client.patch(
                Deployment,
                args.name,
                ops,
                namespace=args.namespace,
                patch_type=PatchType.JSON,
                dry_run=dry_run,
            ),
            what=f"{'dry run of ' if dry_run else ''}rolling back {where}",
        )
        images = ", ".join(
            c.get("image", "?") for c in template.get("spec", {}).get("containers", [])
        )
        verb = "would roll back" if dry_run else "rolled back"
        summary = f"{verb} {where} from revision {current} to revision {wanted} ({images})"
        return summary, {
            "status": 200,
            "dry_run": dry_run,
            "namespace": args.namespace,
            "name": args.name,
            "from_revision": current,
            "to_revision": wanted,
            "images": images,
        }


def _brief(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of an object that matter in an incident thread."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if kind == "pods":
        return {
            "name": meta.get("name"),
            "phase": status.get("phase"),
            "labels": meta.get("labels") or {},
        }
    if kind == "deployments":
        spec = obj.get("spec") or {}
        return {
            "name": meta.get("name"),
            "replicas": spec.get("replicas"),
            "ready_replicas": status.get("readyReplicas", 0),
            "revision": (meta.get("annotations") or {}).get(REVISION),
        }
    return {
        "name": meta.get("name"),
        "object": (obj.get("involvedObject") or {}).get("name"),
        "type": obj.get("type"),
        "reason": obj.get("reason"),
        "message": obj.get("message"),
    }


def _state(item: dict[str, Any]) -> str:
    if "phase" in item:
        return str(item["phase"])
    if "replicas" in item:
        return f"{item['ready_replicas']}/{item['replicas']} ready, revision {item['revision']}"
    return str(item.get("reason"))
