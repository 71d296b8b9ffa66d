"""What the LLM agents cost: tokens per incident in the scripted scenario, and the control
plane's overhead per model call against the OpenAI-compatible stand-in.

Per model call, interleaved round by round against the same stand-in (``bot.sandbox.llm``,
on 127.0.0.1, answering the same Planner answer every time):
  * bare: one ``POST /v1/chat/completions`` with aiohttp (a kept-alive session), JSON decoded:
    the least any client can do;
  * client: :class:`orchestration.agents.client.ModelClient` (the ``openai`` SDK, the retry
    wrapper, usage and confidence read from the answer);
  * control plane: what opsgate does around each Planner call: the budget forecast (prompt
    estimate + ``max_tokens_per_call``), the call through the client, the metering of its
    ``usage``, and the validation of the answer into a plan draft (registered actions, args
    by each action's schema, risk from the declaration, the plan hash);
  * own: that forecast, metering and validation alone, on a reply already received.
Figures: medians over the rounds, in ms per call, and the ratios to the bare call.

Tokens per incident: ``opsgate demo --scripted-llm`` in-process (no browser), one
``/incident checkout-api is slow``; the Researcher's and the Planner's tokens and USD from the
cost entries once the findings are posted.

Run: ``python -m bench.llm_overhead [--calls 200] [--rounds 5] [--json]``.
"""

import argparse
import asyncio
import json
import logging
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from sqlmodel import select

from adapters import GrantSigner
from bot.sandbox.llm import FakeModel
from bot.sandbox.llm_scripts import RecordedRun
from common import Role, SystemClock
from orchestration.agents.catalogue import ActionCatalogue
from orchestration.agents.client import ModelClient, estimate_tokens
from orchestration.agents.meter import TokenMeter
from orchestration.agents.planning import RESPONSE_FORMAT, parse_answer, planner_messages
from orchestration.config import LlmConfig, OpsgateConfig
from orchestration.models import CostEntry, OutboxMessage
from orchestration.telemetry import configure_logging
from orchestration.toolbox import build_registry

SERVICE = "http://127.0.0.1:9"
TEXT = "checkout-api is slow"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _timed(calls: int, one: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await one()
    return (time.perf_counter() - started) * 1000 / calls


async def per_call(calls: int, rounds: int) -> dict[str, Any]:
    """Median ms per call of the bare request, the client, and the control plane's path."""
    answer = RecordedRun(SERVICE)({"response_format": RESPONSE_FORMAT, "messages": []})
    model = FakeModel(responder=lambda _body: answer)
    base_url = await model.start()
    settings = LlmConfig(base_url=base_url, model="bench", max_tokens_per_call=400)
    config = OpsgateConfig.model_validate({"approvers": ["U1"]})
    tools = build_registry(config, signer=GrantSigner(b"b" * 32), clock=SystemClock())
    catalogue = ActionCatalogue(tools)
    messages = planner_messages(TEXT, catalogue)
    body = {
        "model": "bench",
        "messages": messages,
        "max_tokens": 400,
        "temperature": 0,
        "response_format": RESPONSE_FORMAT,
    }
    client = ModelClient(settings)
    url = f"{base_url}/chat/completions"
    try:
        async with aiohttp.ClientSession() as http:

            async def bare() -> None:
                async with http.post(url, json=body) as resp:
                    data = await resp.json()
                    assert data["choices"][0]["message"]["content"]

            async def sdk() -> None:
                await client.complete(messages, response_format=RESPONSE_FORMAT)

            async def control() -> None:
                meter = TokenMeter(
                    settings=settings, budget_tokens=100_000, budget_usd=0.0, soft_ratio=0.8
                )
                meter.gate(prompt_tokens=estimate_tokens(messages), role=Role.PLANNER)
                reply = await client.complete(messages, response_format=RESPONSE_FORMAT)
                meter.charge(
                    reply.usage, role=Role.PLANNER, model=reply.model, duration_ms=reply.elapsed_ms
                )
                parse_answer(reply.content or "", catalogue, model=reply.model, pins={})

            canned = await client.complete(messages, response_format=RESPONSE_FORMAT)

            async def own() -> None:  # opsgate's own work per call, without the call
                meter = TokenMeter(
                    settings=settings, budget_tokens=100_000, budget_usd=0.0, soft_ratio=0.8
                )
                meter.gate(prompt_tokens=estimate_tokens(messages), role=Role.PLANNER)
                meter.charge(canned.usage, role=Role.PLANNER, model=canned.model, duration_ms=1.0)
                parse_answer(canned.content or "", catalogue, model=canned.model, pins={})

            for warm in (bare, sdk, control, own):
                await _timed(20, warm)
            figures: dict[str, list[float]] = {"bare": [], "client": [], "control": [], "own": []}
            for _ in range(rounds):
                figures["bare"].append(await _timed(calls, bare))
                figures["client"].append(await _timed(calls, sdk))
                figures["control"].append(await _timed(calls, control))
                figures["own"].append(await _timed(calls, own))
    finally:
        await client.aclose()
        await tools.aclose()
        await model.stop()
    med = {name: statistics.median(values) for name, values in figures.items()}
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "bare_ms": round(med["bare"], 3),
        "client_ms": round(med["client"], 3),
        "control_ms": round(med["control"], 3),
        "client_ratio": round(med["client"] / med["bare"], 2),
        "control_ratio": round(med["control"] / med["bare"], 2),
        "own_ms": round(med["own"], 3),
        "own_ratio": round(med["own"] / med["bare"], 3),
    }


async def scenario_tokens() -> dict[str, Any]:
    """Tokens and USD of one incident in ``opsgate demo --scripted-llm``."""
    from bot.demo.runner import DemoHandles, run_demo  # noqa: PLC0415 - the demo is heavy

    started: asyncio.Future[DemoHandles] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_demo(
            port=_free_port(),
            open_browser=False,
            break_after_s=3600,
            on_started=started.set_result,
            stop=stop,
            real_monitoring=False,
            scripted_llm=True,
        )
    )
    try:
        demo = await asyncio.wait_for(started, 90)
        await demo.sandbox.slash_command("U0RILEY01", f"/incident {TEXT}")

        def done(session: Any) -> list[CostEntry] | None:
            posted = session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "agent_findings")
            ).first()
            if posted is None:
                return None
            return list(session.exec(select(CostEntry)))

        deadline = time.monotonic() + 120
        costs = None
        while costs is None and time.monotonic() < deadline:
            costs = await demo.control.db.run(done)
            await asyncio.sleep(0.1)
        if costs is None:
            raise RuntimeError("the scripted incident posted no findings in 120 s")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    by_role: dict[str, dict[str, float]] = {}
    for cost in costs:
        if not cost.tool.startswith("llm:"):
            continue
        row = by_role.setdefault(cost.role, {"calls": 0, "tokens": 0, "usd": 0.0})
        row["calls"] += 1
        row["tokens"] += cost.tokens
        row["usd"] = round(row["usd"] + cost.usd, 6)
    return {
        "tokens": int(sum(r["tokens"] for r in by_role.values())),
        "usd": round(sum(r["usd"] for r in by_role.values()), 6),
        "model_calls": int(sum(r["calls"] for r in by_role.values())),
        "by_role": by_role,
    }


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="model calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    calls = asyncio.run(per_call(args.calls, args.rounds))
    tokens = asyncio.run(scenario_tokens())
    if args.json:
        print(json.dumps({"per_call": calls, "incident": tokens}))
        return
    print(
        f"per model call (median of {calls['rounds']} rounds of {calls['calls_per_round']}):\n"
        f"  bare aiohttp POST     {calls['bare_ms']:.3f} ms\n"
        f"  ModelClient (SDK)     {calls['client_ms']:.3f} ms  x{calls['client_ratio']}\n"
        f"  control plane's path  {calls['control_ms']:.3f} ms  x{calls['control_ratio']}\n"
        f"  of which opsgate's own work (forecast, metering, validation) {calls['own_ms']:.3f} ms"
        f"  x{calls['own_ratio']}\n"
        f"scripted incident ({TEXT!r}): {tokens['tokens']} tokens, ${tokens['usd']:.6f}, "
        f"{tokens['model_calls']} model calls; by role {json.dumps(tokens['by_role'])}"
    )


if __name__ == "__main__":
    main()
