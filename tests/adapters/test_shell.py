"""The shell tool: argv templates, safe placeholders, clean environment, timeouts, caps."""

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters import ArgsInvalid, ShellCommand, ShellTool, ToolCall, ToolResult, ToolTimeout
from common import Risk
from tests.adapters.conftest import make_call


def command(*argv: str, **extra: Any) -> ShellCommand:
    return ShellCommand(argv=list(argv), risk=Risk.LOW, read_only=True, idempotent=True, **extra)


def shell(max_output_bytes: int = 65536, **commands: ShellCommand) -> ShellTool:
    return ShellTool(commands=commands, timeout_s=5, max_output_bytes=max_output_bytes)


async def run(tool: ShellTool, action: str, **args: Any) -> ToolResult:
    return await tool.invoke(make_call(f"shell.{action}", **args), None)


async def test_runs_bin_echo_with_placeholder_filled() -> None:
    tool = shell(say=command("/bin/echo", "hello", "{name}"))
    result = await run(tool, "say", name="world")
    assert result.ok
    assert result.status == 0
    assert result.output["stdout"] == "hello world\n"
    assert result.output["argv"] == ["/bin/echo", "hello", "world"]
    assert result.summary.startswith("shell.say: /bin/echo hello world -> exit 0 (")


async def test_program_names_are_resolved_on_the_clean_path() -> None:
    tool = shell(say=command("echo", "{name}"))
    result = await run(tool, "say", name="x")
    assert result.output["argv"][0].endswith("/echo")
    assert result.output["argv"][0].startswith("/")


@pytest.mark.parametrize(
    "value",
    ["; rm -rf /", "-rf", "--force", "$(x)", "`id`", "a b", "x|y", "a&&b", "", "x" * 201, "é"],
)
async def test_injection_shaped_params_are_refused(value: str) -> None:
    tool = shell(say=command("/bin/echo", "{name}"))
    with pytest.raises(ArgsInvalid, match="name:"):
        await run(tool, "say", name=value)


async def test_missing_and_extra_params_are_refused() -> None:
    tool = shell(say=command("/bin/echo", "{name}"))
    with pytest.raises(ArgsInvalid, match="name: Field required"):
        await run(tool, "say")
    with pytest.raises(ArgsInvalid, match="other: Extra inputs"):
        await run(tool, "say", name="a", other="b")


async def test_safe_values_like_units_paths_and_versions_pass() -> None:
    tool = shell(say=command("/bin/echo", "{name}"))
    for value in ["nginx.service", "/var/log/app", "user@host", "v1.2.3+build", "a=b:c"]:
        assert (await run(tool, "say", name=value)).output["stdout"] == f"{value}\n"


async def test_environment_is_clean_but_for_the_idempotency_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_X", "leak-me")
    monkeypatch.setenv("OPSGATE_IDEMPOTENCY_KEY", "from-the-parent")
    result = await run(shell(env=command("/usr/bin/env")), "env")
    assert sorted(result.output["stdout"].splitlines()) == [
        "LANG=C.UTF-8",
        "OPSGATE_IDEMPOTENCY_KEY=k1",  # the call's key (make_call's), not the parent's
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ]


async def test_the_idempotency_key_is_left_out_when_the_call_has_none() -> None:
    tool = shell(env=command("/usr/bin/env"))
    call = ToolCall(tool="shell", action="env", args={}, idempotency_key="")
    result = await tool.invoke(call, None)
    assert "OPSGATE_IDEMPOTENCY_KEY" not in result.output["stdout"]


def test_breaker_target_is_the_command_name() -> None:
    tool = shell(restart=command("/bin/echo", "{unit}"), env=command("/usr/bin/env"))
    assert tool.spec.target(make_call("shell.restart", unit="nginx")) == "restart"
    assert tool.spec.target(make_call("shell.env")) == "env"


async def test_stdin_is_closed() -> None:
    result = await run(shell(read=command("/bin/cat")), "read")
    assert result.ok
    assert result.output["stdout"] == ""


async def test_non_zero_exit_is_a_failed_result() -> None:
    result = await run(shell(fail=command("/bin/sh", "-c", "echo oops >&2; exit 3")), "fail")
    assert not result.ok
    assert result.status == 3
    assert result.error_code == "tool_failed"
    assert result.output["stderr"] == "oops\n"


def running_cmdlines(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text:
            found.append(text)
    return found


async def test_timeout_kills_the_whole_process_group_quickly() -> None:
    marker = f"30.{uuid.uuid4().int % 10**9}"
    tool = ShellTool(
        commands={"hang": command("/bin/sh", "-c", "sleep {secs} & sleep {secs}; wait")},
        timeout_s=0.2,
    )
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="process group was killed"):
        await run(tool, "hang", secs=marker)
    assert time.monotonic() - started < 5
    for _ in range(50):
        if not running_cmdlines(f"sleep {marker}"):
            break
        await asyncio.sleep(0.02)
    assert running_cmdlines(f"sleep {marker}") == []


async def test_per_command_timeout_overrides_tool_default() -> None:
    tool = shell(hang=command("/bin/sleep", "30", timeout_s=0.1))
    with pytest.raises(ToolTimeout, match=r"0\.1 s"):
        await run(tool, "hang")


async def test_output_is_capped_and_flagged() -> None:
    tool = shell(max_output_bytes=1000, spew=command("/usr/bin/head", "-c", "{n}", "/dev/zero"))
    result = await run(tool, "spew", n="200000")
    assert result.ok
    assert len(result.output["stdout"]) == 1000
    assert result.output["stdout_truncated"] is True
    assert result.output["stderr_truncated"] is False


def test_spec_has_one_action_per_command_with_its_traits() -> None:
    tool = ShellTool(
        commands={
            "restart": ShellCommand(
                argv=["/bin/echo", "restart", "{unit}"],
                risk=Risk.HIGH,
                read_only=False,
                idempotent=False,
                compensation="status",
            ),
            "status": command("/bin/echo", "{unit}"),
        }
    )
    restart = tool.spec.actions["restart"]
    assert tool.spec.name == "shell"
    assert (restart.risk, restart.read_only, restart.compensation) == (Risk.HIGH, False, "status")
    assert list(restart.args_model.model_fields) == ["unit"]


def test_program_not_found_is_a_config_error_naming_the_command() -> None:
    with pytest.raises(ValueError, match=r"'bounce'.*no-such-program-xyz"):
        shell(bounce=command("no-such-program-xyz"))
    with pytest.raises(ValueError, match=r"'bounce'.*not an executable"):
        shell(bounce=command("/etc/passwd"))


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["{prog}", "x"], "must be fixed"),
        (["/bin/echo", "{a.b}"], "plain name"),
        (["/bin/echo", "{}"], "plain name"),
        (["/bin/echo", "{a!r}"], "plain name"),
        (["/bin/echo", "{a"], "argv item"),
    ],
)
def test_bad_templates_are_config_errors(argv: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        shell(cmd=command(*argv))


def test_command_names_must_be_simple() -> None:
    with pytest.raises(ValueError, match="command name"):
        ShellTool(commands={"re.start": command("/bin/echo")})


def test_from_config_builds_tool_and_explains_bad_config() -> None:
    tool = ShellTool.from_config(
        {
            "timeout_s": 3,
            "commands": {
                "say": {
                    "argv": ["/bin/echo", "{x}"],
                    "risk": "low",
                    "read_only": True,
                    "idempotent": True,
                },
            },
        }
    )
    assert set(tool.spec.actions) == {"say"}
    with pytest.raises(ValueError, match=r"commands\.say\.risk: Input should be"):
        ShellTool.from_config(
            {
                "commands": {
                    "say": {
                        "argv": ["/bin/echo"],
                        "risk": "huge",
                        "read_only": True,
                        "idempotent": True,
                    }
                }
            }
        )
    with pytest.raises(ValueError, match=r"commands\.say\.read_only: Field required"):
        ShellTool.from_config(
            {"commands": {"say": {"argv": ["/bin/echo"], "risk": "low", "idempotent": True}}}
        )
