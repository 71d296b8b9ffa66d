"""A local stand-in for HashiCorp Vault's HTTP API, for tests and the demo (a test double).

It serves, on 127.0.0.1 and an ephemeral port, the calls opsgate makes, with Vault's documented
request and answer shapes and refusals:

- every request but a login needs ``X-Vault-Token`` naming a live token whose policy covers
  the path, else ``403 {"errors": ["permission denied"]}``;
- ``POST /v1/auth/approle/login`` (``role_id``, ``secret_id``) and
  ``POST /v1/auth/kubernetes/login`` (``role``, ``jwt``) answer ``{"auth": {"client_token",
  "accessor", "policies", "lease_duration", "renewable", ...}}``; wrong credentials get
  ``400 {"errors": ["invalid role or secret ID"]}`` and ``403 permission denied``;
- ``GET /v1/<mount>/data/<path>`` (KV v2) answers ``{"data": {"data": {...}, "metadata":
  {"created_time", "custom_metadata", "deletion_time", "destroyed", "version"}}}``, 404
  ``{"errors": []}`` when there is no such secret;
- ``GET /v1/database/creds/<role>`` issues a user name and password under a lease
  (``lease_id`` ``database/creds/<role>/<id>``, ``lease_duration`` the role's TTL,
  ``renewable``);
- ``PUT /v1/sys/leases/renew`` (``lease_id``, ``increment``) sets the lease to end
  ``increment`` seconds from now, capped by the role's max TTL; an expired or revoked lease
  gets ``400 {"errors": ["lease not found"]}``;
- ``PUT /v1/sys/leases/revoke`` (``lease_id``) answers 204 and ends the lease at once.

:meth:`VaultStandIn.login_valid` tells a test's target whether database credentials are live
(issued, not revoked, not expired), as the database would; counters say what was issued,
renewed and revoked.
"""

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from common import Clock, SystemClock

DENIED = {"errors": ["permission denied"]}


@dataclass
class DbLease:
    """One issued database credential and its lease."""

    lease_id: str
    role: str
    username: str
    password: str
    expires_at: datetime
    max_at: datetime
    revoked: bool = False


@dataclass
class VaultStandIn:
    """Vault's HTTP API for KV v2, AppRole and Kubernetes login, database creds and leases.

    ``tokens`` maps a token to the path prefixes its policy allows (``"secret/data/app/"``,
    ``"database/creds/readonly"``, ``"sys/leases/"``).
    """

    clock: Clock = field(default_factory=SystemClock)
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kv: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # mount -> path
    approles: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    k8s_roles: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    db_roles: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> ttl, max ttl
    leases: dict[str, DbLease] = field(default_factory=dict)
    issued: int = 0
    renewed: int = 0
    revoked: int = 0
    denied: int = 0
    requests: list[str] = field(default_factory=list)

    def put_kv(self, path: str, data: dict[str, Any], *, mount: str = "secret") -> None:
        """Write a KV v2 secret (a new version)."""
        self.kv.setdefault(mount, {})[path] = dict(data)

    def add_token(self, *paths: str) -> str:
        """A new token allowed the path prefixes ``paths``."""
        token = "hvs." + secrets.token_urlsafe(18)
        self.tokens[token] = tuple(paths)
        return token

    def add_approle(self, *paths: str) -> tuple[str, str]:
        """A new AppRole (role_id, secret_id) whose logins are allowed ``paths``."""
        role_id, secret_id = secrets.token_hex(8), secrets.token_urlsafe(16)
        self.approles[role_id] = (role_id, secret_id, tuple(paths))
        return role_id, secret_id

    def add_db_role(self, role: str, *, ttl_s: int = 3600, max_ttl_s: int = 86400) -> None:
        """A database role issuing credentials for ``ttl_s`` (renewable up to ``max_ttl_s``)."""
        self.db_roles[role] = (ttl_s, max_ttl_s)

    def live_leases(self) -> list[DbLease]:
        """Leases neither revoked nor expired."""
        now = self.clock.now()
        return [lease for lease in self.leases.values() if self._live(lease, now)]

    def login_valid(self, username: str, password: str) -> bool:
        """Whether the database would accept these credentials now."""
        now = self.clock.now()
        return any(
            lease.username == username and lease.password == password and self._live(lease, now)
            for lease in self.leases.values()
        )

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/auth/approle/login", self._approle_login)
        app.router.add_post("/v1/auth/kubernetes/login", self._k8s_login)
        app.router.add_get("/v1/database/creds/{role}", self._db_creds)
        app.router.add_put("/v1/sys/leases/renew", self._renew)
        app.router.add_post("/v1/sys/leases/renew", self._renew)
        app.router.add_put("/v1/sys/leases/revoke", self._revoke)
        app.router.add_post("/v1/sys/leases/revoke", self._revoke)
        app.router.add_get("/v1/{mount}/data/{path:.+}", self._kv_read)
        return app

    @staticmethod
    def _live(lease: DbLease, now: datetime) -> bool:
        return not lease.revoked and now < lease.expires_at

    def _allowed(self, request: web.Request, path: str) -> bool:
        self.requests.append(f"{request.method} {request.path}")
        paths = self.tokens.get(request.headers.get("X-Vault-Token", ""))
        if paths is None or not any(path.startswith(prefix) for prefix in paths):
            self.denied += 1
            return False
        return True

    @staticmethod
    def _envelope(**fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
        out.update(fields)
        return out

    def _auth(self, paths: tuple[str, ...], policy: str) -> web.Response:
        token = self.add_token(*paths)
        return web.json_response(
            self._envelope(
                auth={
                    "client_token": token,
                    "accessor": secrets.token_hex(12),
                    "policies": ["default", policy],
                    "token_policies": ["default", policy],
                    "metadata": {},
                    "lease_duration": 2764800,
                    "renewable": True,
                    "entity_id": secrets.token_hex(8),
                    "token_type": "service",
                    "orphan": True,
                }
            )
        )

    async def _approle_login(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        body = await request.json()
        role = self.approles.get(str(body.get("role_id", "")))
        if role is None or not secrets.compare_digest(role[1], str(body.get("secret_id", ""))):
            return web.json_response({"errors": ["invalid role or secret ID"]}, status=400)
        return self._auth(role[2], "opsgate")

    async def _k8s_login(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        body = await request.json()
        role = self.k8s_roles.get(str(body.get("role", "")))
        if role is None or not secrets.compare_digest(role[0], str(body.get("jwt", ""))):
            return web.json_response(DENIED, status=403)
        return self._auth(role[1], str(body.get("role")))

    async def _kv_read(self, request: web.Request) -> web.Response:
        mount, path = request.match_info["mount"], request.match_info["path"]
        if not self._allowed(request, f"{mount}/data/{path}"):
            return web.json_response(DENIED, status=403)
        data = self.kv.get(mount, {}).get(path)
        if data is None:
            return web.json_response({"errors": []}, status=404)
        metadata = {
            "created_time": "2026-01-01T00:00:00.000000Z",
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
            "version": 1,
        }
        return web.json_response(self._envelope(data={"data": data, "metadata": metadata}))

    async def _db_creds(self, request: web.Request) -> web.Response:
        role = request.match_info["role"]
        if not self._allowed(request, f"database/creds/{role}"):
            return web.json_response(DENIED, status=403)
        if role not in self.db_roles:
            return web.json_response({"errors": [f"unknown role: {role}"]}, status=400)
        ttl, max_ttl = self.db_roles[role]
        now = self.clock.now()
        lease = DbLease(
            lease_id=f"database/creds/{role}/{secrets.token_urlsafe(12)}",
            role=role,
            username=f"v-opsgate-{role}-{secrets.token_hex(6)}",
            password=secrets.token_urlsafe(18),
            expires_at=now + timedelta(seconds=ttl),
            max_at=now + timedelta(seconds=max_ttl),
        )
        self.leases[lease.lease_id] = lease
        self.issued += 1
        return web.json_response(
            self._envelope(
                lease_id=lease.lease_id,
                renewable=True,
                lease_duration=ttl,
                data={"username": lease.username, "password": lease.password},
            )
        )

    async def _renew(self, request: web.Request) -> web.Response:
        if not self._allowed(request, "sys/leases/renew"):
            return web.json_response(DENIED, status=403)
        body = await request.json()
        lease = self.leases.get(str(body.get("lease_id", "")))
        now = self.clock.now()
        if lease is None or not self._live(lease, now):
            return web.json_response({"errors": ["lease not found"]}, status=400)
        ttl, _max = self.db_roles[lease.role]
        increment = int(body.get("increment") or ttl)
        lease.expires_at = min(now + timedelta(seconds=increment), lease.max_at)
        self.renewed += 1
        duration = int((lease.expires_at - now).total_seconds())
        return web.json_response(
            self._envelope(lease_id=lease.lease_id, renewable=True, lease_duration=duration)
        )

    async def _revoke(self, request: web.Request) -> web.Response:
        if not self._allowed(request, "sys/leases/revoke"):
            return web.json_response(DENIED, status=403)
        body = await request.json()
        lease = self.leases.get(str(body.get("lease_id", "")))
        if lease is not None and not lease.revoked:
            lease.revoked = True
            self.revoked += 1
        return web.Response(status=204)
