"""Secret references, resolved inside the adapter at call time and nowhere else.

Runbook args (and compensations, checks) may say ``${secret:NAME}``. The plan, the args hash,
the approval card, the database, logs and spans only ever hold that reference: the
:class:`adapters.guards.SecretGuard`, the innermost guard around every tool, replaces it with
the value just before the tool runs, and redacts it from whatever the tool answers or raises.

A secret's value comes from the environment, ``OPSGATE_SECRET_<NAME>`` (NAME upper-cased, any
character other than a letter or digit written ``_``), or from the file ``NAME`` in the folder
``OPSGATE_SECRETS_DIR`` (the layout of a mounted Kubernetes Secret; one trailing newline is
dropped). The environment wins when both are set. Every value resolved joins the redaction set
of :mod:`common.redaction`, so no exit lets it through afterwards;
:func:`register_environment_secrets` adds, at start-up, every secret opsgate can know of before
any call: these files, ``OPSGATE_SECRET_*``, the Slack and alert tokens, the signing secret,
the grant key, passwords inside URLs (the database's) and every other credential-named
variable. A reference to a secret that is not set fails the call with ``secret_missing``,
naming the variable and the file to set, never a value.

HashiCorp Vault, when configured (:mod:`adapters.vault`), answers two more kinds of reference:

- ``${secret:vault:PATH#KEY}``: field ``KEY`` of the KV v2 secret at ``PATH`` under the
  configured mount (``GET /v1/<mount>/data/<PATH>``, the ``data.data`` object);
- ``${secret:vault-lease:PATH#KEY}``: field ``KEY`` of the dynamic secret that reading ``PATH``
  issues (``database/creds/<ROLE>``, ``aws/creds/<ROLE>``). All the references of one call to
  the same ``PATH`` share one lease (a user name and its password belong together); the lease
  is cut to the grant's remaining lifetime when Vault issued it for longer
  (``sys/leases/renew`` with that increment) and revoked (``sys/leases/revoke``) as soon as
  the call ends, whatever its outcome.

A :class:`SecretResolver` knows all three sources; each call resolves through its own
:class:`SecretScope`, opened by the guard and reachable by the tool (:func:`current_scope`) for
secrets in its own settings, which owns the call's leases and records every secret used
(:func:`adapters.credentials.record_use`).
"""

import asyncio
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import structlog

from adapters.credentials import CredentialUse, record_use
from adapters.errors import AdapterError, SecretMissing
from common import Clock, SystemClock
from common.redaction import SECRET_REF, is_credential_key, register_secret, secret_names

log = structlog.get_logger(__name__)

ENV_PREFIX = "OPSGATE_SECRET_"
DIR_ENV = "OPSGATE_SECRETS_DIR"
MAX_SECRET_FILE_BYTES = 65536
# Variables that hold a credential whatever their name says (besides credential-named ones).
KNOWN_SECRET_VARS = (
    "OPSGATE_GRANT_KEY",
    "OPSGATE_TRACE_KEY",
    "OPSGATE_ALERT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "OTEL_EXPORTER_OTLP_HEADERS",  # an OTLP backend's API key (Honeycomb's x-honeycomb-team)
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
)
MIN_SCANNED_LEN = 8  # a credential-named variable with a shorter value is a flag, not a secret


def env_name(name: str) -> str:
    """The environment variable that holds secret ``name``: ``OPSGATE_SECRET_<NAME>``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def where_to_set(name: str) -> str:
    """Plain words saying where the value of secret ``name`` can be given."""
    ref = parse_vault_ref(name)
    if ref is not None:
        return f"{ref.describe()} must exist, and secrets.vault must be configured"
    return f"set {env_name(name)} or put a file {name!r} in {DIR_ENV}"


@dataclass(frozen=True, slots=True)
class VaultRef:
    """A reference into Vault: a KV v2 secret or a dynamic one, and the field to take."""

    kind: Literal["kv", "lease"]
    path: str
    key: str

    def describe(self) -> str:
        """Plain words naming what is read."""
        what = "the KV secret" if self.kind == "kv" else "the dynamic secret"
        return f"field {self.key!r} of {what} at {self.path!r} in Vault"


def parse_vault_ref(name: str) -> VaultRef | None:
    """The Vault reference ``name`` holds (``vault:PATH#KEY``, ``vault-lease:PATH#KEY``)."""
    scheme, sep, rest = name.partition(":")
    if not sep or scheme not in {"vault", "vault-lease"}:
        return None
    path, _, key = rest.partition("#")
    if any(part in {"", ".", ".."} for part in path.split("/")) or not key:
        return None
    return VaultRef("kv" if scheme == "vault" else "lease", path, key)


def is_vault_name(name: str) -> bool:
    """True when secret ``name`` is looked up in Vault rather than the environment."""
    return name.startswith(("vault:", "vault-lease:"))


class SecretSource:
    """Looks secrets up in the environment and the secrets folder (read at each lookup)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read ``environ`` (default: the process environment, as it is at lookup time)."""
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment looked in."""
        return os.environ if self._environ is None else self._environ

    def lookup(self, name: str) -> str | None:
        """The value of secret ``name``, or None when it is set nowhere."""
        if ":" in name or "/" in name or "#" in name:
            return None  # a Vault reference (or nonsense): never an environment name or a file
        value = self.environ.get(env_name(name))
        if value:
            return value
        folder = self.environ.get(DIR_ENV)
        if not folder or not SECRET_REF.fullmatch(f"${{secret:{name}}}") or name.startswith("."):
            return None
        path = Path(folder) / name
        try:
            if path.stat().st_size > MAX_SECRET_FILE_BYTES:
                return None
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text.removesuffix("\n") or None

    def missing(self, value: Any) -> list[str]:
        """The names referenced in ``value`` that are set nowhere, sorted."""
        return sorted(name for name in secret_names(value) if self.lookup(name) is None)

    def resolve(self, value: Any) -> Any:
        """``value`` with every reference replaced by its secret (each one registered).

        Raises:
            SecretMissing: a referenced secret is not set; the message names where to set it.
        """
        missing = self.missing(value)
        if missing:
            raise SecretMissing(
                "the arguments refer to "
                + ", ".join(f"${{secret:{name}}}" for name in missing)
                + ", which is not set: "
                + "; ".join(where_to_set(name) for name in missing)
            )
        return self._fill(value)

    def _fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return SECRET_REF.sub(self._value_of, value)
        if isinstance(value, Mapping):
            return {key: self._fill(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._fill(item) for item in value]
        return value

    def _value_of(self, match: re.Match[str]) -> str:
        value = self.lookup(match.group(1))
        if value is None:  # removed between the check and the fill
            raise SecretMissing(
                f"${{secret:{match.group(1)}}} is not set: {where_to_set(match.group(1))}"
            )
        register_secret(value)
        return value


def _url_passwords(value: str) -> Iterator[str]:
    if "://" not in value or "@" not in value:
        return
    try:
        password = urlsplit(value).password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every value of ``environ`` that is a secret: see the module docstring."""
    env = os.environ if environ is None else environ
    values: list[str] = []
    for name, value in env.items():
        if not value:
            continue
        named = name.startswith(ENV_PREFIX) or name in KNOWN_SECRET_VARS
        if named or (is_credential_key(name) and len(value) >= MIN_SCANNED_LEN):
            values.append(value)
        if name.startswith("OTEL_EXPORTER_OTLP") and name.endswith("_HEADERS"):
            # key1=value1,key2=value2: each header value alone is redacted too
            values.extend(v.strip() for _, _, v in (p.partition("=") for p in value.split(",")))
        values.extend(_url_passwords(value))
    folder = env.get(DIR_ENV)
    if folder and Path(folder).is_dir():
        source = SecretSource(env)
        for path in sorted(Path(folder).iterdir()):
            found = source.lookup(path.name) if path.is_file() else None
            if found:
                values.append(found)
    return values


def register_url_password(url: str | None) -> bool:
    """Register the password inside ``url`` (a database URL), if it holds one."""
    added = [register_secret(value) for value in _url_passwords(url or "")]  # register all
    return any(added)


def register_environment_secrets(environ: Mapping[str, str] | None = None) -> int:
    """Register every secret of the environment and the secrets folder; returns how many."""
    return sum(register_secret(value) for value in environment_secrets(environ))


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A dynamic secret Vault issued: its lease, its fields, how long it lives."""

    lease_id: str
    data: Mapping[str, Any]
    duration_s: int


class VaultBackend(Protocol):
    """What the resolver needs from Vault (:class:`adapters.vault.HvacVault` implements it).

    Errors are :class:`SecretMissing` (no such secret or field, or the policy refuses it) and
    :class:`adapters.errors.SecretUnavailable` (Vault down, opsgate's login refused).
    """

    async def read_kv(self, path: str) -> Mapping[str, Any]:
        """The ``data.data`` object of the KV v2 secret at ``path``."""
        ...

    async def lease(self, path: str, *, ttl_s: int) -> Lease:
        """Read the dynamic secret at ``path``; its lease lasts at most ``ttl_s`` seconds."""
        ...

    async def revoke(self, lease_id: str) -> None:
        """Revoke ``lease_id`` now."""
        ...


class SecretResolver:
    """Resolves references from the environment, the secrets folder and Vault (if any)."""

    def __init__(
        self,
        *,
        source: SecretSource | None = None,
        vault: VaultBackend | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Read ``source`` (default: this process's environment) and ``vault`` when given."""
        self.source = source or SecretSource()
        self.vault = vault
        self.clock: Clock = clock or SystemClock()

    def missing(self, value: Any) -> list[str]:
        """Names referenced in ``value`` that cannot resolve (not set, or Vault not configured).

        Vault paths are not read here: whether they exist is known only at call time.
        """
        out = []
        for name in sorted(secret_names(value)):
            if is_vault_name(name):
                if self.vault is None or parse_vault_ref(name) is None:
                    out.append(name)
            elif self.source.lookup(name) is None:
                out.append(name)
        return out

    def scope(self, *, expires_at: datetime | None = None) -> "SecretScope":
        """A scope for one call; its leases end when it closes, or at ``expires_at``."""
        return SecretScope(self, expires_at=expires_at)


_SCOPE: ContextVar["SecretScope | None"] = ContextVar("secret_scope", default=None)


def current_scope() -> "SecretScope | None":
    """The scope of the call being run in this task, opened by the guard (None outside one)."""
    return _SCOPE.get()


async def resolve_setting(value: Any, source: SecretSource) -> Any:
    """A tool's own setting (a token, a DSN, a header) with its references resolved.

    Vault references go through the call's scope (:func:`current_scope`, opened by the
    :class:`adapters.guards.SecretGuard`), so leases end with the call and uses are recorded;
    environment and file references are read from the tool's ``source`` (tests give one of
    their own) and recorded as used.

    Raises:
        SecretMissing: a reference cannot resolve; the message says where to set it.
        SecretUnavailable: Vault could not answer.
    """
    names = secret_names(value)
    scope = current_scope()
    if scope is not None and any(is_vault_name(name) for name in names):
        return await scope.resolve(value)
    resolved = source.resolve(value)
    for name in sorted(names):
        where = "env" if source.environ.get(env_name(name)) else "file"
        record_use(CredentialUse(secret=name, source=where))
    return resolved


MIN_LEASE_S = 1


class SecretScope:
    """The secrets of one call: resolved once each, leases revoked when the scope closes."""

    def __init__(self, resolver: SecretResolver, *, expires_at: datetime | None) -> None:
        """Resolve through ``resolver``; leases last until ``expires_at`` at most."""
        self._resolver = resolver
        self._expires_at = expires_at
        self._values: dict[str, str] = {}
        self._kv: dict[str, Mapping[str, Any]] = {}
        self._leases: dict[str, Lease] = {}
        self._lease_expiry: dict[str, datetime] = {}
        self._token: Any = None

    async def __aenter__(self) -> "SecretScope":
        """Make this the current scope of the task."""
        self._token = _SCOPE.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Revoke every lease taken (also after a failure or a cancellation)."""
        if self._token is not None:
            _SCOPE.reset(self._token)
            self._token = None
        if self._leases:  # a cancelled call still revokes what it took
            await asyncio.shield(self.close())

    @property
    def resolved(self) -> bool:
        """True once any secret was resolved in this scope."""
        return bool(self._values)

    async def resolve(self, value: Any) -> Any:
        """``value`` with every reference replaced by its secret (each one registered).

        Raises:
            SecretMissing: a reference cannot resolve; the message says where to set it.
            SecretUnavailable: Vault could not answer.
        """
        missing = self._resolver.missing(value)
        if missing:
            raise SecretMissing(
                "the call refers to "
                + ", ".join(f"${{secret:{name}}}" for name in missing)
                + ", which cannot be resolved: "
                + "; ".join(where_to_set(name) for name in missing)
            )
        for name in sorted(secret_names(value)):
            if name not in self._values:
                self._values[name] = await self._fetch(name)
        return self._fill(value)

    def _fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return SECRET_REF.sub(lambda m: self._values[m.group(1)], value)
        if isinstance(value, Mapping):
            return {key: self._fill(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._fill(item) for item in value]
        return value

    async def _fetch(self, name: str) -> str:
        ref = parse_vault_ref(name)
        if ref is None:
            found = self._resolver.source.lookup(name)
            if found is None:  # removed between the check and the fill
                raise SecretMissing(f"${{secret:{name}}} is not set: {where_to_set(name)}")
            from_env = self._resolver.source.environ.get(env_name(name))
            register_secret(found)
            record_use(CredentialUse(secret=name, source="env" if from_env else "file"))
            return found
        vault = self._resolver.vault
        assert vault is not None  # missing() refused it otherwise
        if ref.kind == "kv":
            if ref.path not in self._kv:
                self._kv[ref.path] = await vault.read_kv(ref.path)
            data = self._kv[ref.path]
            record_use(CredentialUse(secret=name, source="vault-kv"))
        else:
            if ref.path not in self._leases:
                lease = await vault.lease(ref.path, ttl_s=self._ttl_s())
                self._leases[ref.path] = lease
                self._lease_expiry[ref.path] = self._resolver.clock.now() + timedelta(
                    seconds=lease.duration_s
                )
                log.info(
                    "vault_lease_issued",
                    path=ref.path,
                    lease_id=lease.lease_id,
                    ttl_s=lease.duration_s,
                )
            data = self._leases[ref.path].data
        field_value = data.get(ref.key)
        if not isinstance(field_value, str | int) or isinstance(field_value, bool):
            raise SecretMissing(f"${{secret:{name}}}: {ref.describe()} has no such text field")
        text = str(field_value)
        register_secret(text)
        return text

    def _ttl_s(self) -> int:
        if self._expires_at is None:
            return 0  # 0: the role's own TTL
        left = (self._expires_at - self._resolver.clock.now()).total_seconds()
        return max(MIN_LEASE_S, int(left))

    async def close(self) -> None:
        """Revoke the leases this scope took and record them; safe to call twice."""
        vault = self._resolver.vault
        leases, self._leases = self._leases, {}
        for path, lease in leases.items():
            revoked = False
            try:
                assert vault is not None
                await vault.revoke(lease.lease_id)
                revoked = True
                log.info("vault_lease_revoked", path=path, lease_id=lease.lease_id)
            except AdapterError as exc:
                # The lease still ends on its own, at most at the grant's expiry.
                log.warning(
                    "vault_lease_revoke_failed",
                    path=path,
                    lease_id=lease.lease_id,
                    code=exc.code,
                    error=exc.message,
                )
            for name in sorted(self._values):
                ref = parse_vault_ref(name)
                if ref is not None and ref.kind == "lease" and ref.path == path:
                    record_use(
                        CredentialUse(
                            secret=name,
                            source="vault-lease",
                            lease_id=lease.lease_id,
                            expires_at=self._lease_expiry.get(path),
                            revoked=revoked,
                        )
                    )
