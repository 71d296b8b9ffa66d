"""The ``shell`` tool: runs configured argv templates, never a shell, in a clean environment.

Each configured command is one action. Its ``{placeholders}`` become string arguments limited
to a safe character set and never starting with ``-``, so no argument can inject a shell
construct or an option. The call's idempotency key reaches the process as
``OPSGATE_IDEMPOTENCY_KEY``; the circuit breaker target of a call is its command's name.
"""

import asyncio
import contextlib
import os
import re
import shutil
import signal
import string
import time
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
)

from adapters.base import (
    ActionSpec,
    Grant,
    ToolCall,
    ToolResult,
    ToolSpec,
    parse_args,
    summarise_validation_error,
)
from adapters.errors import ErrorCode, ToolFailed, ToolTimeout
from common import Risk

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
CLEAN_ENV: Mapping[str, str] = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}
IDEMPOTENCY_ENV = "OPSGATE_IDEMPOTENCY_KEY"
SAFE_ARG_PATTERN = r"^[A-Za-z0-9._:/@=+-]{1,200}$"
_COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REAP_TIMEOUT_S = 2.0
_READ_CHUNK = 65536


def _not_an_option(value: str) -> str:
    if value.startswith("-"):
        raise ValueError("must not start with '-' (it would be read as an option)")
    return value


SafeArg = Annotated[
    str, StringConstraints(pattern=SAFE_ARG_PATTERN), AfterValidator(_not_an_option)
]


class ShellCommand(BaseModel):
    """One configured command: an argv template such as ``["systemctl", "restart", "{unit}"]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1)
    risk: Risk
    read_only: bool
    idempotent: bool
    description: str = ""
    timeout_s: float | None = Field(default=None, gt=0)
    compensation: str | None = None


class ShellConfig(BaseModel):
    """The ``adapters.shell`` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    commands: dict[str, ShellCommand]
    timeout_s: float = Field(default=10.0, gt=0)
    max_output_bytes: int = Field(default=65536, ge=0)
    cost_per_call_usd: float = Field(default=0.0, ge=0)


def placeholders(name: str, argv: list[str]) -> list[str]:
    """The ``{placeholder}`` names of a template, in order; raises ValueError on bad templates."""
    found: list[str] = []
    for position, part in enumerate(argv):
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as exc:
            raise ValueError(f"shell command {name!r}: argv item {part!r}: {exc}") from None
        for _, field_name, spec, conversion in parsed:
            if field_name is None:
                continue
            if not field_name.isidentifier() or field_name.startswith("_") or spec or conversion:
                raise ValueError(
                    f"shell command {name!r}: placeholder {{{field_name}}} must be a plain name "
                    "like {unit}"
                )
            if position == 0:
                raise ValueError(f"shell command {name!r}: the program (argv[0]) must be fixed")
            if field_name not in found:
                found.append(field_name)
    return found


def _resolve_program(name: str, program: str) -> str:
    if os.path.isabs(program):
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return program
        raise ValueError(f"shell command {name!r}: {program} is not an executable file")
    found = shutil.which(program, path=CLEAN_PATH)
    if found is None:
        raise ValueError(
            f"shell command {name!r}: {program!r} is not an absolute path and was not found "
            f"on {CLEAN_PATH}"
        )
    return found


def _args_model(name: str, fields: list[str]) -> type[BaseModel]:
    definitions: dict[str, Any] = dict.fromkeys(fields, (SafeArg, ...))
    return create_model(
        f"Shell_{name}_Args", __config__=ConfigDict(extra="forbid", frozen=True), **definitions
    )


def _command_of(call: ToolCall) -> str:
    return call.action


class ShellTool:
    """Runs configured commands as subprocesses; exit code 0 is success."""

    def __init__(
        self,
        *,
        commands: Mapping[str, ShellCommand],
        timeout_s: float = 10.0,
        max_output_bytes: int = 65536,
        cost_per_call_usd: float = 0.0,
    ) -> None:
        """Check every command's template and program now, so bad config fails at startup."""
        actions: dict[str, ActionSpec] = {}
        self._programs: dict[str, str] = {}
        for name, command in commands.items():
            if not _COMMAND_NAME.match(name):
                raise ValueError(
                    f"shell command name {name!r} must be lowercase letters, digits and '_'"
                )
            fields = placeholders(name, command.argv)
            self._programs[name] = _resolve_program(name, command.argv[0])
            actions[name] = ActionSpec(
                name=name,
                args_model=_args_model(name, fields),
                risk=command.risk,
                read_only=command.read_only,
                idempotent=command.idempotent,
                compensation=command.compensation,
                description=command.description or " ".join(command.argv),
            )
        self._commands = dict(commands)
        self._timeout_s = timeout_s
        self._max_output_bytes = max_output_bytes
        self._spec = ToolSpec(
            name="shell",
            actions=actions,
            cost_per_call_usd=cost_per_call_usd,
            target_of=_command_of,
        )

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> "ShellTool":
        """Build the tool from the ``adapters.shell`` config section; bad config -> ValueError."""
        try:
            config = ShellConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                f"adapters.shell config is invalid: {summarise_validation_error(exc)}"
            ) from None
        return cls(
            commands=config.commands,
            timeout_s=config.timeout_s,
            max_output_bytes=config.max_output_bytes,
            cost_per_call_usd=config.cost_per_call_usd,
        )

    @property
    def spec(self) -> ToolSpec:
        """One action per configured command."""
        return self._spec

    async def invoke(self, call: ToolCall, grant: Grant | None) -> ToolResult:
        """Run the command with its placeholders filled; grants are checked by the guards."""
        action = self._spec.action(call.action)
        args = parse_args(action, call.args).model_dump()
        command = self._commands[call.action]
        argv = [self._programs[call.action]] + [part.format(**args) for part in command.argv[1:]]
        timeout = command.timeout_s or self._timeout_s
        env = dict(CLEAN_ENV)
        if call.idempotency_key:
            env[IDEMPOTENCY_ENV] = call.idempotency_key
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolFailed(
                f"shell.{call.action} could not start {argv[0]}: {exc.strerror or exc}",
                retryable=False,
            ) from exc
        try:
            async with asyncio.timeout(timeout):
                (stdout, out_cut), (stderr, err_cut), exit_code = await asyncio.gather(
                    self._read_capped(proc.stdout), self._read_capped(proc.stderr), proc.wait()
                )
        except TimeoutError as exc:
            raise ToolTimeout(
                f"shell.{call.action} ran longer than {timeout:g} s; its process group was killed"
            ) from exc
        finally:
            if proc.returncode is None:
                await _kill_group(proc)
        duration_ms = (time.perf_counter() - started) * 1000
        return ToolResult(
            ok=exit_code == 0,
            status=exit_code,
            output={
                "exit_code": exit_code,
                "stdout": stdout.decode(errors="replace"),
                "stderr": stderr.decode(errors="replace"),
                "stdout_truncated": out_cut,
                "stderr_truncated": err_cut,
                "argv": argv,
            },
            summary=f"shell.{call.action}: {' '.join(argv)} -> exit {exit_code} "
            f"({duration_ms:.0f} ms)",
            duration_ms=duration_ms,
            cost_usd=self._spec.cost_per_call_usd,
            error_code=None if exit_code == 0 else ErrorCode.TOOL_FAILED,
        )

    async def _read_capped(self, stream: asyncio.StreamReader | None) -> tuple[bytes, bool]:
        # Keep draining past the cap so the child never blocks on a full pipe.
        buf = bytearray()
        truncated = False
        if stream is None:
            return b"", False
        while chunk := await stream.read(_READ_CHUNK):
            room = self._max_output_bytes - len(buf)
            if room > 0:
                buf += chunk[:room]
            truncated = truncated or len(chunk) > room
        return bytes(buf), truncated


async def _drain(stream: asyncio.StreamReader | None) -> None:
    if stream is not None:
        while await stream.read(_READ_CHUNK):
            pass


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the child and everything it started, then reap it so no pipe or zombie is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_REAP_TIMEOUT_S):
            await asyncio.gather(_drain(proc.stdout), _drain(proc.stderr), proc.wait())
