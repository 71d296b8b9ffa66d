"""The composition root: builds the control plane and everything it is given."""

import os
import secrets
from pathlib import Path

from adapters import BreakerStore, GrantSigner, ToolRegistry
from adapters.secrets import register_environment_secrets, register_url_password
from common import Clock, SystemClock
from orchestration.breakers import DbBreakerStore
from orchestration.checks import load_policies
from orchestration.config import OpsgateConfig, load_config
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.errors import ConfigError
from orchestration.toolbox import build_registry


def grant_signer() -> GrantSigner:
    """Signs grants with ``OPSGATE_GRANT_KEY`` (hex), or a fresh key for this process.

    Grants are issued and verified by the same process within seconds, so a per-process key is
    enough; set the variable only to share grants across processes.
    """
    key = os.environ.get("OPSGATE_GRANT_KEY")
    return GrantSigner(bytes.fromhex(key) if key else secrets.token_bytes(32))


def tools_for(
    config: OpsgateConfig,
    *,
    clock: Clock | None = None,
    signer: GrantSigner | None = None,
    breakers: BreakerStore | None = None,
) -> ToolRegistry:
    """The configured, guarded tool registry; ``breakers`` shares circuit breakers (else local)."""
    return build_registry(
        config, signer=signer or grant_signer(), clock=clock or SystemClock(), breakers=breakers
    )


def build_control(
    config: OpsgateConfig | None = None,
    *,
    config_path: Path | None = None,
    database_url: str | None = None,
    clock: Clock | None = None,
) -> ControlPlane:
    """A ControlPlane wired from config and environment (not yet started)."""
    # Every secret this process can know of joins the redaction set before anything runs:
    # Slack and alert tokens, the signing secret, the grant key, the database password,
    # OPSGATE_SECRET_* and the files of OPSGATE_SECRETS_DIR.
    register_environment_secrets()
    config = config or load_config(config_path)
    clock = clock or SystemClock()
    signer = grant_signer()
    pack, problems = load_policies(config)
    if pack is None:
        first = problems[0]
        raise ConfigError(f"{first.where}: {first.message}", path=first.source, line=first.line)
    register_url_password(database_url)
    db = Database(database_url)
    # Replicas on one database share their circuit breakers through it.
    breakers = DbBreakerStore(db, clock=clock)
    return ControlPlane(
        db=db,
        config=config,
        tools=tools_for(config, clock=clock, signer=signer, breakers=breakers),
        pack=pack,
        signer=signer,
        clock=clock,
    )
