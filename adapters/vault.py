"""HashiCorp Vault as a secret source, through ``hvac``: KV v2 reads and dynamic-secret leases.

Configured under ``secrets.vault`` (:class:`VaultConfig`); it authenticates with a token, an
AppRole (``role_id`` and ``secret_id``) or the pod's Kubernetes service-account token, each
credential itself a ``${secret:NAME}`` reference to the environment or the secrets folder.

hvac is synchronous (``requests``): every call runs in a worker thread
(:func:`asyncio.to_thread`) so the event loop never waits on Vault, and one lock serialises
logins. A login whose token Vault stops accepting (``403``) is renewed once by logging in
again (AppRole, Kubernetes). Vault's answers are mapped at this boundary: ``403`` and ``404``
are :class:`SecretMissing` (the policy or the path is wrong: retrying changes nothing),
Vault being down or unreachable is :class:`SecretUnavailable` (retryable).
"""

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from adapters.errors import SecretMissing, SecretUnavailable
from adapters.secrets import Lease, SecretSource, where_to_set
from adapters.settings.vault import VaultConfig
from common.redaction import SECRET_REF, redact_text, register_secret

T = TypeVar("T")


class HvacVault:
    """The :class:`adapters.secrets.VaultBackend` of a real Vault, through hvac."""

    def __init__(
        self,
        config: VaultConfig,
        *,
        source: SecretSource | None = None,
        client_factory: Callable[..., Any] = hvac.Client,
    ) -> None:
        """Talk to ``config.url``; the login's credentials are looked up in ``source``."""
        self._config = config
        self._source = source or SecretSource()
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    async def read_kv(self, path: str) -> Mapping[str, Any]:
        """The ``data.data`` object of the KV v2 secret at ``path``."""

        def read(client: Any) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._config.mount, raise_on_deleted_version=True
            )

        answer = await self._call(read, what=f"KV secret {path!r}")
        data = (answer or {}).get("data", {}).get("data")
        if not isinstance(data, Mapping):
            raise SecretMissing(f"Vault answered for KV secret {path!r} without data.data")
        return data

    async def lease(self, path: str, *, ttl_s: int) -> Lease:
        """Read the dynamic secret at ``path``; cut its lease to ``ttl_s`` when longer."""
        answer = await self._call(lambda client: client.read(path), what=f"secret {path!r}")
        if not isinstance(answer, Mapping) or not answer.get("lease_id"):
            raise SecretMissing(
                f"Vault issued no lease for {path!r}: use vault: for a KV secret, "
                "vault-lease: for a dynamic one"
            )
        lease = Lease(
            lease_id=str(answer["lease_id"]),
            data=answer.get("data") or {},
            duration_s=int(answer.get("lease_duration") or 0),
        )
        if ttl_s > 0 and (lease.duration_s == 0 or lease.duration_s > ttl_s):
            try:
                renewed = await self._call(
                    lambda client: client.sys.renew_lease(lease_id=lease.lease_id, increment=ttl_s),
                    what=f"the lease of {path!r}",
                )
            except BaseException:
                await self.revoke(lease.lease_id)
                raise
            duration = int((renewed or {}).get("lease_duration") or lease.duration_s)
            lease = Lease(lease_id=lease.lease_id, data=lease.data, duration_s=duration)
        return lease

    async def revoke(self, lease_id: str) -> None:
        """Revoke ``lease_id`` now (``PUT sys/leases/revoke``)."""
        await self._call(
            lambda client: client.sys.revoke_lease(lease_id=lease_id), what="a lease revocation"
        )

    async def _call(self, fn: Callable[[Any], T], *, what: str) -> T:
        return await asyncio.to_thread(self._call_sync, fn, what)

    def _call_sync(self, fn: Callable[[Any], T], what: str) -> T:
        client = self._logged_in(fresh=False)
        try:
            try:
                return fn(client)
            except hvac.exceptions.Forbidden:
                if self._config.auth == "token":
                    raise
                return fn(self._logged_in(fresh=True))  # the login token may have expired
        except hvac.exceptions.Forbidden as exc:
            raise SecretMissing(
                f"Vault refused to read {what}: permission denied (check the policy of "
                "opsgate's Vault role)"
            ) from exc
        except hvac.exceptions.InvalidPath as exc:
            raise SecretMissing(f"Vault has no {what}") from exc
        except (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
            requests.RequestException,
        ) as exc:
            raise SecretUnavailable(
                f"Vault at {self._config.url} could not answer for {what}: {type(exc).__name__}"
            ) from exc
        except hvac.exceptions.VaultError as exc:
            raise SecretMissing(
                f"Vault refused {what}: {redact_text(str(exc)).splitlines()[0][:200]}"
            ) from exc

    def _logged_in(self, *, fresh: bool) -> Any:
        with self._lock:
            if self._client is not None and not fresh:
                return self._client
            config = self._config
            client = self._factory(
                url=config.url,
                timeout=config.timeout_s,
                namespace=config.namespace,
                verify=str(config.ca_cert) if config.ca_cert else True,
            )
            try:
                if config.auth == "token":
                    client.token = self._secret(config.token)
                elif config.auth == "approle":
                    client.auth.approle.login(
                        role_id=self._plain_or_secret(config.role_id),
                        secret_id=self._secret(config.secret_id),
                        mount_point=config.auth_mount or "approle",
                    )
                else:
                    client.auth.kubernetes.login(
                        role=config.role,
                        jwt=self._jwt(),
                        mount_point=config.auth_mount or "kubernetes",
                    )
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                raise SecretUnavailable(
                    f"opsgate could not log in to Vault at {config.url} ({config.auth}): "
                    f"{type(exc).__name__}",
                    retryable=isinstance(exc, requests.RequestException),
                ) from exc
            register_secret(getattr(client, "token", None))  # a login's token is a secret too
            self._client = client
            return client

    def _secret(self, ref: str | None) -> str:
        match = SECRET_REF.fullmatch(ref or "")
        assert match is not None  # VaultConfig refuses anything else
        value = self._source.lookup(match.group(1))
        if value is None:
            raise SecretUnavailable(
                f"the Vault login needs ${{secret:{match.group(1)}}}, which is not set: "
                f"{where_to_set(match.group(1))}",
                retryable=False,
            )
        return value

    def _plain_or_secret(self, value: str | None) -> str:
        return self._secret(value) if value and SECRET_REF.fullmatch(value) else str(value)

    def _jwt(self) -> str:
        try:
            jwt = self._config.jwt_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(
                f"cannot read the service-account token at {self._config.jwt_path}: {exc.strerror}",
                retryable=False,
            ) from exc
        register_secret(jwt)
        return jwt
