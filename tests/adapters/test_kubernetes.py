"""The kubernetes tool against the stand-in API server (adapters.testing.kubernetes)."""

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from adapters import ArgsInvalid, GrantError, GrantSigner, ToolCall, ToolFailed, guarded
from adapters.base import preview_action
from adapters.errors import NamespaceNotAllowed
from adapters.kubernetes import RESTARTED_AT, KubernetesConfig, KubernetesTool
from adapters.kubernetes.tool import KUBERNETES_SPEC
from adapters.secrets import SecretSource
from adapters.testing import InMemoryBreakerStore
from adapters.testing.kubernetes import KubeApiStandIn, PolicyRule, service_account_user
from common import FakeClock, args_hash
from common.redaction import redact_text
from tests.adapters.conftest import grant_for

READ_TOKEN = "reader-static-token-0123456789"
MINT_TOKEN = "minter-static-token-0123456789"
SA_NS = "opsgate"
ACCOUNTS = {"rollout_restart": "restarter", "scale": "scaler", "rollout_undo": "undoer"}
READER = "system:serviceaccount:opsgate:reader"
MINTER = "system:serviceaccount:opsgate:minter"


WORKLOAD_NAMESPACES = ("shop", "shop-canary", "secret-ns")


def grant_rbac(api: KubeApiStandIn, namespaces: tuple[str, ...] = WORKLOAD_NAMESPACES) -> None:
    """What docs/kubernetes.md grants, and no more (test_kubernetes_docs.py holds them equal):
    each account only the verbs on the resources its calls use."""
    api.allow(
        MINTER,
        PolicyRule(
            namespace=SA_NS,
            verbs=("create",),
            resources=("serviceaccounts/token",),
            resource_names=tuple(ACCOUNTS.values()),
        ),
    )
    for ns in namespaces:
        api.allow(
            READER,
            PolicyRule(namespace=ns, verbs=("get", "list"), resources=("pods",)),
            PolicyRule(namespace=ns, verbs=("get",), resources=("pods/log",)),
            PolicyRule(namespace=ns, verbs=("list",), resources=("events",)),
            PolicyRule(
                namespace=ns, verbs=("get", "list"), resources=("deployments",), api_group="apps"
            ),
        )
        api.allow(
            service_account_user(SA_NS, "restarter"),
            PolicyRule(
                namespace=ns, verbs=("patch",), resources=("deployments",), api_group="apps"
            ),
        )
        api.allow(
            service_account_user(SA_NS, "scaler"),
            PolicyRule(
                namespace=ns,
                verbs=("get", "patch"),
                resources=("deployments/scale",),
                api_group="apps",
            ),
        )
        api.allow(
            service_account_user(SA_NS, "undoer"),
            PolicyRule(
                namespace=ns, verbs=("get", "patch"), resources=("deployments",), api_group="apps"
            ),
            PolicyRule(namespace=ns, verbs=("list",), resources=("replicasets",), api_group="apps"),
        )


def seed(api: KubeApiStandIn) -> None:
    """Two namespaces the way docs/kubernetes.md sets them up, and a third one not allowed."""
    api.add_static_token(READ_TOKEN, READER)
    api.add_static_token(MINT_TOKEN, MINTER)
    for name in ACCOUNTS.values():
        api.add_service_account(SA_NS, name)
    grant_rbac(api)
    for ns in WORKLOAD_NAMESPACES:
        api.add_deployment(ns, "web", replicas=3)
        api.add_pod(ns, "web-1", labels={"app": "web"}, log="line 1\nline 2\nboom\n")
        api.add_event(ns, involved="web", reason="BackOff", message="Back-off restarting")


@pytest.fixture
def secrets_env() -> dict[str, str]:
    return {"OPSGATE_SECRET_K8S_READ": READ_TOKEN, "OPSGATE_SECRET_K8S_MINT": MINT_TOKEN}


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[KubeApiStandIn]:
    async with KubeApiStandIn(clock=clock) as server:
        seed(server)
        yield server


def config(api: KubeApiStandIn, **over: Any) -> KubernetesConfig:
    raw: dict[str, Any] = {
        "server": api.url,
        "namespaces": ["shop", "shop-canary"],
        "read_token": "${secret:K8S_READ}",
        "minting_token": "${secret:K8S_MINT}",
        "service_account_namespace": SA_NS,
        "service_accounts": ACCOUNTS,
    }
    return KubernetesConfig.model_validate(raw | over)


@pytest.fixture
def tool(api: KubeApiStandIn, clock: FakeClock, secrets_env: dict[str, str]) -> KubernetesTool:
    return KubernetesTool(config(api), clock=clock, secrets=SecretSource(secrets_env))


def kcall(action: str, key: str = "opsgate-step1", **args: Any) -> ToolCall:
    return ToolCall(tool="kubernetes", action=action, args=args, idempotency_key=key)


async def test_restart_uses_a_token_minted_for_that_step(
    tool: KubernetesTool, api: KubeApiStandIn, signer: GrantSigner, clock: FakeClock
) -> None:
    """The patch is made by the restarter's minted token, after its dry run; nothing else writes."""
    call = kcall("rollout_restart", namespace="shop", name="web")
    grant = grant_for(call, signer, clock, ttl_s=120)
    result = await tool.invoke(call, grant)
    patches = [r for r in api.requests if r.verb == "patch"]
    assert [p.dry_run for p in patches] == [True, False]
    minted = {p.token for p in patches}
    assert len(minted) == 1
    token = minted.pop()
    assert token not in (READ_TOKEN, MINT_TOKEN)
    assert {p.user for p in patches} == {service_account_user(SA_NS, "restarter")}
    mint = [r for r in api.requests if r.resource == "serviceaccounts/token"]
    assert [(m.user, m.name, m.status) for m in mint] == [(MINTER, "restarter", 201)]
    template = api.deployment("shop", "web")["spec"]["template"]
    assert RESTARTED_AT in template["metadata"]["annotations"]
    # The token is redacted wherever it might appear, and reported without its value.
    assert redact_text(f"x {token} y") == "x [redacted] y"
    (fact,) = result.credentials
    assert fact["service_account"] == "opsgate/restarter"
    assert fact["grant_id"] == grant.grant_id
    assert fact["scope"] == {"deployments": ["patch"]}
    assert token not in json.dumps(result.model_dump(mode="json"))
    # Asked for the API's floor, since the grant has 120 s left.
    assert fact["requested_s"] == 600
    assert api.token_expiry(token) == clock.now() + timedelta(seconds=600)


async def test_token_expiry_follows_the_grant_above_the_floor(
    tool: KubernetesTool, api: KubeApiStandIn, signer: GrantSigner, clock: FakeClock
) -> None:
    call = kcall("scale", namespace="shop", name="web", replicas=2)
    result = await tool.invoke(call, grant_for(call, signer, clock, ttl_s=1800))
    assert result.credentials[0]["requested_s"] == 1800


async def test_a_token_past_its_expiry_is_refused(api: KubeApiStandIn, clock: FakeClock) -> None:
    """The API server answers 401 with a Status once a minted token has expired."""
    async with aiohttp.ClientSession() as http:
        minted = await http.post(
            f"{api.url}/api/v1/namespaces/{SA_NS}/serviceaccounts/undoer/token",
            json={"spec": {"expirationSeconds": 600}},
            headers={"Authorization": f"Bearer {MINT_TOKEN}"},
        )
        token = (await minted.json())["status"]["token"]
        url = f"{api.url}/apis/apps/v1/namespaces/shop/deployments/web"
        headers = {"Authorization": f"Bearer {token}"}
        ok = await http.get(url, headers=headers)
        assert ok.status == 200
        clock.advance(601)
        refused = await http.get(url, headers=headers)
        assert refused.status == 401
        body = await refused.json()
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


async def test_token_request_below_the_floor_is_invalid(api: KubeApiStandIn) -> None:
    """The real API refuses expirationSeconds < 600 with 422 Invalid naming the field."""
    async with aiohttp.ClientSession() as http:
        answer = await http.post(
            f"{api.url}/api/v1/namespaces/{SA_NS}/serviceaccounts/restarter/token",
            json={"spec": {"expirationSeconds": 120}},
            headers={"Authorization": f"Bearer {MINT_TOKEN}"},
        )
        body = await answer.json()
    assert answer.status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    assert "may not specify a duration less than 10 minutes" in body["message"]


async def test_the_read_only_credential_cannot_reach_the_write_verbs(
    api: KubeApiStandIn, tool: KubernetesTool
) -> None:
    """Researcher/probe credential: reads work, a patch is 403 Forbidden as the API says it."""
    result = await tool.invoke(kcall("get", namespace="shop", kind="deployments", name="web"), None)
    assert result.output["items"][0]["replicas"] == 3
    async with aiohttp.ClientSession() as http:
        answer = await http.patch(
            f"{api.url}/apis/apps/v1/namespaces/shop/deployments/web",
            data=json.dumps({"spec": {"replicas": 0}}),
            headers={
                "Authorization": f"Bearer {READ_TOKEN}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        body = await answer.json()
    assert answer.status == 403
    assert body["message"] == (
        f'deployments.apps "web" is forbidden: User "{READER}" cannot patch resource '
        '"deployments" in API group "apps" in the namespace "shop"'
    )
    assert body["reason"] == "Forbidden"
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert api.deployment("shop", "web")["spec"]["replicas"] == 3


async def test_a_write_without_a_grant_mints_nothing(
    api: KubeApiStandIn, tool: KubernetesTool
) -> None:
    with pytest.raises(GrantError):
        await tool.invoke(kcall("scale", namespace="shop", name="web", replicas=0), None)
    assert api.requests == []


async def test_a_minted_token_is_limited_to_its_service_accounts_verbs(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    """The scaler's token may patch deployments/scale but not the deployment itself."""
    call = kcall("scale", namespace="shop", name="web", replicas=1)
    await tool.invoke(call, grant_for(call, signer, clock))
    token = next(r.token for r in api.requests if r.resource == "deployments/scale")
    async with aiohttp.ClientSession() as http:
        answer = await http.patch(
            f"{api.url}/apis/apps/v1/namespaces/shop/deployments/web",
            data="{}",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        body = await answer.json()
    assert answer.status == 403
    assert (
        'User "system:serviceaccount:opsgate:scaler" cannot patch resource "deployments"'
        in (body["message"])
    )


async def test_namespace_outside_the_allow_list_is_refused_before_any_request(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    call = kcall("rollout_restart", namespace="secret-ns", name="web")
    with pytest.raises(NamespaceNotAllowed) as caught:
        await tool.invoke(call, grant_for(call, signer, clock))
    assert caught.value.code == "namespace_not_allowed"
    with pytest.raises(NamespaceNotAllowed):
        await tool.invoke(kcall("get", namespace="secret-ns", kind="pods"), None)
    assert api.requests == []


async def test_scale_records_the_count_and_its_compensation_restores_it(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    call = kcall("scale", namespace="shop", name="web", replicas=1)
    result = await tool.invoke(call, grant_for(call, signer, clock))
    assert result.output["previous_replicas"] == 3
    assert result.summary == "set replicas of deployment shop/web 3→1"
    assert api.deployment("shop", "web")["spec"]["replicas"] == 1
    spec = KUBERNETES_SPEC.actions["scale"]
    assert spec.compensate_from is not None
    undo_args = spec.compensate_from(call.args, result.model_dump(mode="json"))
    assert undo_args == {"namespace": "shop", "name": "web", "replicas": 3}
    undo = kcall("scale", key="opsgate-undo", **undo_args)
    await tool.invoke(undo, grant_for(undo, signer, clock))
    assert api.deployment("shop", "web")["spec"]["replicas"] == 3


async def test_preview_is_a_dry_run_that_changes_nothing(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    call = kcall("scale", namespace="shop", name="web", replicas=1)
    preview = await tool.preview(call, grant_for(call, signer, clock))
    assert preview.summary == "would set replicas of deployment shop/web 3→1"
    assert api.deployment("shop", "web")["spec"]["replicas"] == 3
    assert [r.dry_run for r in api.requests if r.verb == "patch"] == [True]
    assert preview.credentials[0]["purpose"] == "dry_run"


async def test_a_failing_dry_run_sends_no_real_call(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    """A deployment that does not exist: the dry run's 404 stops the call, quoted plainly."""
    call = kcall("rollout_restart", namespace="shop", name="ghost")
    with pytest.raises(ToolFailed) as caught:
        await tool.invoke(call, grant_for(call, signer, clock))
    assert 'deployments.apps "ghost" not found' in caught.value.message
    assert "404 NotFound" in caught.value.message
    assert not caught.value.retryable
    assert caught.value.credentials[0]["service_account"] == "opsgate/restarter"
    assert [r.dry_run for r in api.requests if r.verb == "patch"] == [True]


async def test_rollout_undo_restores_the_previous_revision(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    """Like kubectl rollout undo: the template of the previous ReplicaSet comes back."""
    async with aiohttp.ClientSession() as http:
        bumped = await http.patch(
            f"{api.url}/apis/apps/v1/namespaces/shop/deployments/web",
            data=json.dumps(
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "web", "image": "app:2"}]}}
                    }
                }
            ),
            headers={
                "Authorization": f"Bearer {MINT_TOKEN}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        assert bumped.status == 403  # the minter cannot touch deployments
    api.allow(
        MINTER,
        PolicyRule(
            namespace="shop", verbs=("patch",), resources=("deployments",), api_group="apps"
        ),
    )
    async with aiohttp.ClientSession() as http:
        bumped = await http.patch(
            f"{api.url}/apis/apps/v1/namespaces/shop/deployments/web",
            data=json.dumps(
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "web", "image": "app:2"}]}}
                    }
                }
            ),
            headers={
                "Authorization": f"Bearer {MINT_TOKEN}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        assert bumped.status == 200
    before = api.deployment("shop", "web")
    assert before["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    call = kcall("rollout_undo", namespace="shop", name="web")
    preview = await tool.preview(
        call,
        grant_for(dataclasses.replace(call, action=preview_action("rollout_undo")), signer, clock),
    )
    assert preview.summary.startswith(
        "would roll back deployment shop/web from revision 2 to revision 1"
    )
    result = await tool.invoke(call, grant_for(call, signer, clock))
    after = api.deployment("shop", "web")
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/app:1"
    assert after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert result.output["to_revision"] == 1


async def test_reads_pods_events_and_logs(tool: KubernetesTool) -> None:
    pods = await tool.invoke(
        kcall("get", namespace="shop", kind="pods", labels={"app": "web"}), None
    )
    assert [p["name"] for p in pods.output["items"]] == ["web-1"]
    events = await tool.invoke(kcall("get", namespace="shop", kind="events", name="web"), None)
    assert events.output["items"][0]["reason"] == "BackOff"
    logs = await tool.invoke(kcall("logs", namespace="shop", pod="web-1", tail_lines=2), None)
    assert logs.output["body"] == "line 2\nboom\n"
    with pytest.raises(ToolFailed, match='pods "nope" not found'):
        await tool.invoke(kcall("logs", namespace="shop", pod="nope"), None)


async def test_guarded_preview_needs_a_preview_grant_and_a_real_grant_is_not_one(
    api: KubeApiStandIn, tool: KubernetesTool, signer: GrantSigner, clock: FakeClock
) -> None:
    """A dry-run grant never covers the real call, and the real call's grant is no dry-run grant."""
    guarded_tool = guarded(tool, signer=signer, clock=clock, breakers=InMemoryBreakerStore(clock))
    call = kcall("rollout_restart", namespace="shop", name="web")
    preview_grant = signer.issue(
        grant_id="p1",
        tool="kubernetes",
        action=preview_action("rollout_restart"),
        args_hash=args_hash(call.as_preview().tool_action, call.args),
        expires_at=clock.now() + timedelta(seconds=60),
    )
    preview = await guarded_tool.preview(call, preview_grant)
    assert preview.summary.startswith("would restart deployment shop/web")
    with pytest.raises(GrantError):
        await guarded_tool.invoke(call, preview_grant)
    with pytest.raises(GrantError):
        await guarded_tool.preview(call, grant_for(call, signer, clock))
    assert [r.dry_run for r in api.requests if r.verb == "patch"] == [True]


def test_settings_refuse_literal_tokens_and_unmapped_actions() -> None:
    base = {
        "server": "https://10.0.0.1:6443",
        "namespaces": ["shop"],
        "read_token": "${secret:R}",
        "minting_token": "${secret:M}",
        "service_accounts": ACCOUNTS,
    }
    KubernetesConfig.model_validate(base)
    with pytest.raises(ValueError, match="secret reference"):
        KubernetesConfig.model_validate(base | {"read_token": "eyJhbGciOi.abc.def"})
    with pytest.raises(ValueError, match="missing"):
        KubernetesConfig.model_validate(base | {"service_accounts": {"scale": "scaler"}})


async def test_args_are_checked(tool: KubernetesTool) -> None:
    with pytest.raises(ArgsInvalid):
        await tool.invoke(kcall("scale", namespace="Shop!", name="web", replicas=-1), None)
