"""Vault through hvac against the local stand-in: logins, KV v2, leases cut to the grant and
revoked when the call ends, and Vault's refusals mapped to plain errors."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from adapters import AdapterError, GrantSigner, ToolCall, ToolFailed, ToolResult
from adapters.credentials import CredentialUse, recording
from adapters.errors import ErrorCode, SecretMissing, SecretUnavailable
from adapters.guards import SecretGuard
from adapters.secrets import SecretResolver, SecretSource, parse_vault_ref
from adapters.testing import FakeTool
from adapters.vault import HvacVault, VaultConfig
from adapters.vault_standin import VaultStandIn
from common import FakeClock, args_hash
from common.redaction import forget_secrets, redact_text
from tests.orchestration.helpers import serve_locally

KV_PASSWORD = "kv-password-0123456789"


@dataclass
class Running:
    """The stand-in, served, and a token allowed what opsgate needs."""

    standin: VaultStandIn
    url: str
    token: str


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    yield
    forget_secrets()


@pytest.fixture
async def vault(clock: FakeClock) -> AsyncIterator[Running]:
    standin = VaultStandIn(clock=clock)
    standin.put_kv("checkout/db", {"password": KV_PASSWORD, "port": 5432})
    standin.add_db_role("readonly", ttl_s=3600, max_ttl_s=7200)
    token = standin.add_token("secret/data/checkout/", "database/creds/readonly", "sys/leases/")
    runner, port = await serve_locally(standin.app())
    yield Running(standin, f"http://127.0.0.1:{port}", token)
    await runner.cleanup()


def backend(running: Running, **settings: object) -> HvacVault:
    config = VaultConfig.model_validate(
        {"url": running.url, "token": "${secret:VAULT_TOKEN}", **settings}
    )
    return HvacVault(config, source=SecretSource({"OPSGATE_SECRET_VAULT_TOKEN": running.token}))


def resolver(running: Running, clock: FakeClock, **settings: object) -> SecretResolver:
    return SecretResolver(vault=backend(running, **settings), clock=clock)


def test_references_name_a_kv_field_or_a_dynamic_secret() -> None:
    kv = parse_vault_ref("vault:checkout/db#password")
    lease = parse_vault_ref("vault-lease:database/creds/readonly#username")
    assert kv is not None
    assert (kv.kind, kv.path, kv.key) == ("kv", "checkout/db", "password")
    assert lease is not None
    assert (lease.kind, lease.path, lease.key) == ("lease", "database/creds/readonly", "username")
    assert parse_vault_ref("vault:../etc#x") is None
    assert parse_vault_ref("API_KEY") is None
    # an environment lookup never reads a Vault name as a variable or a file
    assert (
        SecretSource({"OPSGATE_SECRET_VAULT_CHECKOUT_DB_PASSWORD": "x" * 10}).lookup(
            "vault:checkout/db#password"
        )
        is None
    )


async def test_kv_v2_read_returns_data_data(vault: Running, clock: FakeClock) -> None:
    async with resolver(vault, clock).scope() as scope:
        value = await scope.resolve(
            {"dsn": "postgresql://ops:${secret:vault:checkout/db#password}@db"}
        )
    assert value == {"dsn": f"postgresql://ops:{KV_PASSWORD}@db"}
    assert redact_text(f"leaked {KV_PASSWORD}") == "leaked [redacted]"  # joined the redaction set
    assert "GET /v1/secret/data/checkout/db" in vault.standin.requests


async def test_a_path_outside_the_policy_is_refused_permission_denied(
    vault: Running, clock: FakeClock
) -> None:
    vault.standin.put_kv("billing/api", {"key": "nope-nope-nope"})
    async with resolver(vault, clock).scope() as scope:
        with pytest.raises(SecretMissing, match="permission denied"):
            await scope.resolve("${secret:vault:billing/api#key}")
    assert vault.standin.denied == 1


async def test_a_wrong_token_is_refused_by_vault_with_403(vault: Running, clock: FakeClock) -> None:
    config = VaultConfig(url=vault.url, token="${secret:VAULT_TOKEN}")
    wrong = HvacVault(config, source=SecretSource({"OPSGATE_SECRET_VAULT_TOKEN": "hvs.wrong"}))
    async with SecretResolver(vault=wrong, clock=clock).scope() as scope:
        with pytest.raises(SecretMissing, match="permission denied"):
            await scope.resolve("${secret:vault:checkout/db#password}")


async def test_a_missing_secret_or_field_names_the_path(vault: Running, clock: FakeClock) -> None:
    async with resolver(vault, clock).scope() as scope:
        with pytest.raises(SecretMissing, match="no KV secret 'checkout/nothing'"):
            await scope.resolve("${secret:vault:checkout/nothing#password}")
        with pytest.raises(SecretMissing, match="no such text field"):
            await scope.resolve("${secret:vault:checkout/db#user}")


async def test_vault_refs_without_vault_configured_fail_with_where_to_configure() -> None:
    async with SecretResolver(source=SecretSource({})).scope() as scope:
        with pytest.raises(SecretMissing, match=r"secrets\.vault must be configured"):
            await scope.resolve("${secret:vault:checkout/db#password}")


async def test_approle_login_then_read(vault: Running, clock: FakeClock) -> None:
    role_id, secret_id = vault.standin.add_approle("secret/data/checkout/")
    config = VaultConfig.model_validate(
        {"url": vault.url, "auth": "approle", "role_id": role_id, "secret_id": "${secret:SID}"}
    )
    good = HvacVault(config, source=SecretSource({"OPSGATE_SECRET_SID": secret_id}))
    async with SecretResolver(vault=good, clock=clock).scope() as scope:
        assert await scope.resolve("${secret:vault:checkout/db#password}") == KV_PASSWORD
    assert "POST /v1/auth/approle/login" in vault.standin.requests

    bad = HvacVault(config, source=SecretSource({"OPSGATE_SECRET_SID": "not-the-secret-id"}))
    async with SecretResolver(vault=bad, clock=clock).scope() as scope:
        with pytest.raises(SecretUnavailable, match="could not log in to Vault"):
            await scope.resolve("${secret:vault:checkout/db#password}")


async def test_kubernetes_login_with_the_service_account_token(
    vault: Running, clock: FakeClock, tmp_path: Path
) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcHNnYXRlIn0.c2lnbmF0dXJl"
    (tmp_path / "token").write_text(jwt + "\n")
    vault.standin.k8s_roles["opsgate"] = (jwt, ("secret/data/checkout/",))
    config = VaultConfig.model_validate(
        {"url": vault.url, "auth": "kubernetes", "role": "opsgate", "jwt_path": tmp_path / "token"}
    )
    async with SecretResolver(vault=HvacVault(config), clock=clock).scope() as scope:
        assert await scope.resolve("${secret:vault:checkout/db#password}") == KV_PASSWORD
    assert "POST /v1/auth/kubernetes/login" in vault.standin.requests


async def test_dynamic_credentials_share_one_lease_cut_to_the_grant_and_revoked_at_the_end(
    vault: Running, clock: FakeClock
) -> None:
    expires = clock.now() + timedelta(seconds=120)
    with recording() as uses:
        async with resolver(vault, clock).scope(expires_at=expires) as scope:
            creds = await scope.resolve(
                {
                    "user": "${secret:vault-lease:database/creds/readonly#username}",
                    "password": "${secret:vault-lease:database/creds/readonly#password}",
                }
            )
            assert vault.standin.login_valid(creds["user"], creds["password"])
            (lease,) = vault.standin.live_leases()
            # issued for the role's hour, then cut to the grant's two minutes
            assert lease.expires_at == expires
            assert vault.standin.renewed == 1
    assert vault.standin.issued == 1
    assert vault.standin.revoked == 1
    assert not vault.standin.login_valid(creds["user"], creds["password"])
    assert {u.source for u in uses} == {"vault-lease"}
    assert all(u.revoked and u.lease_id == lease.lease_id for u in uses)
    assert all(u.expires_at == expires for u in uses)


async def test_an_expired_lease_cannot_be_renewed_and_its_credentials_stop_working(
    vault: Running, clock: FakeClock
) -> None:
    async with resolver(vault, clock).scope() as scope:
        user = await scope.resolve("${secret:vault-lease:database/creds/readonly#username}")
        password = await scope.resolve("${secret:vault-lease:database/creds/readonly#password}")
        (lease,) = vault.standin.live_leases()
        clock.advance(3601)
        assert not vault.standin.login_valid(user, password)
        renewed = await asyncio.to_thread(
            backend(vault)._logged_in(fresh=True).adapter.put,
            "/v1/sys/leases/renew",
            json={"lease_id": lease.lease_id, "increment": 60},
            raise_exception=False,
        )
        assert renewed.status_code == 400
        assert renewed.json() == {"errors": ["lease not found"]}


async def test_the_guard_revokes_the_lease_after_a_failing_call(
    vault: Running, clock: FakeClock
) -> None:
    seen: list[str] = []

    def fail(call: ToolCall) -> ToolResult:
        seen.append(call.args["password"])
        raise ToolFailed(f"connection refused for {call.args['password']}")

    fake = FakeTool(responses=fail)
    guard = SecretGuard(fake, resolver=resolver(vault, clock))
    args = {"password": "${secret:vault-lease:database/creds/readonly#password}"}
    signer = GrantSigner(b"g" * 32)
    grant = signer.issue(
        grant_id="g1",
        tool="fake",
        action="write",
        args_hash=args_hash("fake.write", args),
        expires_at=clock.now() + timedelta(seconds=60),
    )
    call = ToolCall(tool="fake", action="write", args=args, idempotency_key="k")
    with recording() as uses, pytest.raises(AdapterError) as raised:
        await guard.invoke(call, grant)
    assert seen
    assert seen[0] not in str(raised.value)  # the error is redacted
    assert vault.standin.revoked == 1
    assert vault.standin.live_leases() == []
    assert uses == [
        CredentialUse(
            secret="vault-lease:database/creds/readonly#password",
            source="vault-lease",
            lease_id=uses[0].lease_id,
            expires_at=clock.now() + timedelta(seconds=60),
            revoked=True,
        )
    ]


async def test_vault_down_is_unavailable_and_retryable(clock: FakeClock) -> None:
    runner, port = await serve_locally(web.Application())
    await runner.cleanup()  # nothing listens there any more
    dead = Running(VaultStandIn(clock=clock), f"http://127.0.0.1:{port}", "hvs.x")
    async with resolver(dead, clock, timeout_s=2).scope() as scope:
        with pytest.raises(SecretUnavailable) as raised:
            await scope.resolve("${secret:vault:checkout/db#password}")
    assert raised.value.retryable
    assert raised.value.code == ErrorCode.SECRET_UNAVAILABLE


def test_the_config_refuses_literal_vault_credentials_and_incomplete_auth() -> None:
    with pytest.raises(ValueError, match="reference"):
        VaultConfig.model_validate({"url": "http://v:8200", "token": "hvs.literal"})
    with pytest.raises(ValueError, match="needs role_id and secret_id"):
        VaultConfig.model_validate({"url": "http://v:8200", "auth": "approle"})
    with pytest.raises(ValueError, match="http"):
        VaultConfig.model_validate({"url": "v:8200", "token": "${secret:T}"})
