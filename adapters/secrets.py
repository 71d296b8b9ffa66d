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
"""

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from adapters.errors import SecretMissing
from common.redaction import SECRET_REF, is_credential_key, register_secret, secret_names

ENV_PREFIX = "OPSGATE_SECRET_"
DIR_ENV = "OPSGATE_SECRETS_DIR"
MAX_SECRET_FILE_BYTES = 65536
# Variables that hold a credential whatever their name says (besides credential-named ones).
KNOWN_SECRET_VARS = ("OPSGATE_GRANT_KEY", "OPSGATE_ALERT_TOKEN", "SLACK_SIGNING_SECRET")
MIN_SCANNED_LEN = 8  # a credential-named variable with a shorter value is a flag, not a secret


def env_name(name: str) -> str:
    """The environment variable that holds secret ``name``: ``OPSGATE_SECRET_<NAME>``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def where_to_set(name: str) -> str:
    """Plain words saying where the value of secret ``name`` can be given."""
    return f"set {env_name(name)} or put a file {name!r} in {DIR_ENV}"


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
