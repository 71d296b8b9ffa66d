"""Plans over a FakeTool: factories shared by the failure, budget and cache tests."""

from pathlib import Path
from typing import Any

from sqlmodel import select

from adapters import GrantSigner, ToolResult
from adapters.testing import FakeTool
from common import FakeClock
from orchestration.config import OpsgateConfig, ToolLimits
from orchestration.control import ControlPlane
from orchestration.models import AuditEvent
from orchestration.toolbox import build_registry
from tests.orchestration.helpers import make_config, make_control

FAKE_RUNBOOK = """
id: fake-fix
version: 1
title: Fix the fake thing
match:
  keywords: ["fakefix"]
steps:
{steps}
"""


def steps_yaml(*steps: dict[str, Any]) -> str:
    out = []
    for index, step in enumerate(steps):
        out.append(
            f"  - id: s{index}\n    title: step {index}\n    tool: {step['tool']}\n"
            f"    args: {step.get('args', {})!r}\n    risk: {step.get('risk', 'low')}"
        )
        if "cost_usd" in step:
            out.append(f"    cost_usd: {step['cost_usd']}")
        for key in ("expect", "compensate", "check"):
            if key in step:
                out.append(f"    {key}: {step[key]!r}")
    return "\n".join(out).replace("'", '"')


async def pending_nonce(cp: ControlPlane, *, besides: str | None = None) -> str:
    """The nonce of the (newest other) approval card the plan posted."""
    nonces = await cp.db.run(
        lambda s: list(
            s.exec(select(AuditEvent.nonce).where(AuditEvent.event == "approval_requested"))
        )
    )
    found = [n for n in nonces if n is not None and n != besides]
    assert found, nonces
    return found[-1]


async def control_with(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    *steps: dict[str, Any],
    **config: Any,
) -> ControlPlane:
    cache_ttls = config.pop("cache_ttl", None)
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "fake.yaml").write_text(FAKE_RUNBOOK.format(steps=steps_yaml(*steps)))
    cfg: OpsgateConfig = make_config(folder, **config)
    signer = GrantSigner(b"s" * 32)
    tools = build_registry(
        cfg, signer=signer, clock=clock, extra=[(fake, ToolLimits(rate_per_s=1000, burst=1000))]
    )
    return await make_control(db_url, cfg, clock, tools=tools, signer=signer, cache_ttls=cache_ttls)


def result(ok: bool = True, cost: float = 0.0, **output: Any) -> ToolResult:
    return ToolResult(
        ok=ok,
        status=output.pop("status", None),
        output=output,
        summary="scripted",
        duration_ms=1.0,
        cost_usd=cost,
    )
