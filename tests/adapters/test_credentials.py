"""Per-role credentials: who holds what, the grant naming it, http's per-host credentials."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from adapters import GrantSigner, HttpTool, ToolCall, ToolRegistry, guarded
from adapters.credentials import CredentialSpec, holds, recording
from adapters.errors import ArgsInvalid, CredentialMissing, ErrorCode
from adapters.http import HttpConfig
from adapters.secrets import SecretResolver, SecretSource
from adapters.testing import InMemoryBreakerStore
from common import FakeClock, Role, args_hash
from common.redaction import forget_secrets
from tests.orchestration.helpers import serve_locally

WRITE_TOKEN = "write-token-0123456789"
READ_TOKEN = "read-token-9876543210"


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    yield
    forget_secrets()


def test_the_planner_holds_nothing_the_researcher_only_reads_the_executor_its_action() -> None:
    read = CredentialSpec(
        name="r", read_only=True, holders=frozenset({Role.RESEARCHER, Role.EXECUTOR})
    )
    write = CredentialSpec(name="w", read_only=False)
    glass = CredentialSpec(name="g", read_only=False, holders=frozenset())
    assert [holds(role, read) for role in (Role.PLANNER, Role.RESEARCHER, Role.EXECUTOR)] == [
        False,
        True,
        True,
    ]
    assert [holds(role, write) for role in (Role.PLANNER, Role.RESEARCHER, Role.EXECUTOR)] == [
        False,
        False,
        True,
    ]
    assert not any(holds(role, glass) for role in Role)


def test_a_tool_cannot_declare_credentials_that_break_the_role_rules() -> None:
    with pytest.raises(ValueError, match="Planner never holds"):
        CredentialSpec(name="p", read_only=True, holders=frozenset({Role.PLANNER}))
    with pytest.raises(ValueError, match="Researcher holds only read-only"):
        CredentialSpec(name="w", read_only=False, holders=frozenset({Role.RESEARCHER}))
    with pytest.raises(ValueError, match="auditor cannot hold"):
        CredentialSpec(name="a", read_only=True, holders=frozenset({Role.AUDITOR}))
    with pytest.raises(ValueError, match="Researcher holds only read-only"):
        HttpConfig.model_validate(
            {
                "allow_hosts": ["api.internal"],
                "credentials": {
                    "w": {
                        "hosts": ["api.internal"],
                        "actions": ["post"],
                        "headers": {"Authorization": "Bearer ${secret:W}"},
                        "holders": ["researcher"],
                    }
                },
            }
        )


def test_http_credentials_in_config_must_be_references() -> None:
    with pytest.raises(ValueError, match="reference"):
        HttpConfig.model_validate(
            {
                "allow_hosts": ["api.internal"],
                "credentials": {
                    "w": {"hosts": ["api.internal"], "headers": {"Authorization": "Bearer abc123"}}
                },
            }
        )


@dataclass
class Target:
    """Records the credential headers each request carried."""

    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            (request.method, request.headers.get("Authorization"), request.headers.get("X-Read"))
        )
        return web.json_response({"ok": True})


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, int]]:
    t = Target()
    app = web.Application()
    app.router.add_route("*", "/api", t.handle)
    runner, port = await serve_locally(app)
    yield t, port
    await runner.cleanup()


def _tool(holders: list[str] | None) -> HttpTool:
    write: dict[str, object] = {
        "hosts": ["127.0.0.1"],
        "actions": ["post"],
        "headers": {"Authorization": "Bearer ${secret:WRITE}"},
    }
    if holders is not None:
        write["holders"] = holders
    return HttpTool.from_config(
        {
            "allow_hosts": ["127.0.0.1"],
            "credentials": {
                "api-read": {
                    "hosts": ["127.0.0.1"],
                    "actions": ["get"],
                    "headers": {"X-Read": "${secret:READ}"},
                },
                "api-write": write,
            },
        }
    )


def _grant(signer: GrantSigner, clock: FakeClock, call: ToolCall, *names: str):  # type: ignore[no-untyped-def]
    return signer.issue(
        grant_id="g",
        tool=call.tool,
        action=call.action,
        args_hash=args_hash(call.tool_action, call.args),
        expires_at=clock.now() + timedelta(seconds=60),
        credentials=names,
    )


async def test_http_presents_the_configured_credential_resolved_at_call_time(
    target: tuple[Target, int], clock: FakeClock
) -> None:
    seen, port = target
    tool = _tool(None)
    signer = GrantSigner(b"c" * 32)
    source = SecretSource({"OPSGATE_SECRET_WRITE": WRITE_TOKEN, "OPSGATE_SECRET_READ": READ_TOKEN})
    guard = guarded(
        tool,
        signer=signer,
        clock=clock,
        breakers=InMemoryBreakerStore(clock),
        resolver=SecretResolver(source=source, clock=clock),
    )
    url = f"http://127.0.0.1:{port}/api"
    get = ToolCall(tool="http", action="get", args={"url": url}, idempotency_key="k1")
    post = ToolCall(tool="http", action="post", args={"url": url}, idempotency_key="k2")
    assert tool.spec.credential(get) == CredentialSpec(
        name="http:api-read",
        read_only=True,
        holders=frozenset({Role.RESEARCHER, Role.EXECUTOR}),
        description="headers for 127.0.0.1 (get)",
    )
    with recording() as uses:
        await guard.invoke(get, _grant(signer, clock, get, "http:api-read"))
        await guard.invoke(post, _grant(signer, clock, post, "http:api-write"))
    assert seen.seen == [("GET", None, READ_TOKEN), ("POST", f"Bearer {WRITE_TOKEN}", None)]
    assert [(u.secret, u.source) for u in uses] == [("READ", "env"), ("WRITE", "env")]

    # a grant that does not name the credential: refused before anything is sent
    with pytest.raises(CredentialMissing) as refused:
        await guard.invoke(post, _grant(signer, clock, post))
    assert refused.value.code == ErrorCode.CREDENTIAL_MISSING
    assert "'http:api-write'" in refused.value.message
    assert len(seen.seen) == 2
    await tool.aclose()


async def test_a_runbook_header_cannot_override_a_configured_credential(
    target: tuple[Target, int], clock: FakeClock
) -> None:
    _seen, port = target
    tool = _tool(None)
    call = ToolCall(
        tool="http",
        action="post",
        args={"url": f"http://127.0.0.1:{port}/api", "headers": {"authorization": "x"}},
        idempotency_key="k",
    )
    with pytest.raises(ArgsInvalid, match="set by the credential 'api-write'"):
        await tool.invoke(call, None)
    await tool.aclose()


def test_registry_lists_the_tool_credentials_through_the_guards(clock: FakeClock) -> None:
    tool = _tool([])
    guard = guarded(
        tool, signer=GrantSigner(b"c" * 32), clock=clock, breakers=InMemoryBreakerStore(clock)
    )
    _found, _action = ToolRegistry([guard]).action("http.post")
    call = ToolCall(
        tool="http", action="post", args={"url": "http://127.0.0.1/x"}, idempotency_key=""
    )
    credential = guard.spec.credential(call)
    assert credential is not None
    assert credential.holders == frozenset()  # holders: [] - no role holds it without asking
    assert not holds(Role.EXECUTOR, credential)
