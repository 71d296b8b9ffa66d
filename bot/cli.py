"""The ``opsgate`` command line."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.main import build_control, tools_for
from orchestration.checks import check_all
from orchestration.config import config_path
from orchestration.errors import OrchestrationError
from orchestration.telemetry import configure_logging
from orchestration.views import PlanPreview


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsgate", description="ChatOps control plane for incident response."
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: $OPSGATE_CONFIG, "
        "else ./opsgate.yaml when present, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate config, runbooks and policies")
    plan = sub.add_parser("plan", help="print the plan that would be proposed (runs nothing)")
    plan.add_argument("text", help='incident text, e.g. "checkout-api is down"')
    plan.add_argument("--requester", default="", help="Slack user id of the requester")
    demo = sub.add_parser("demo", help="the whole flow locally: Slack sandbox in the browser")
    demo.add_argument("--port", type=int, default=8080, help="sandbox page port (default 8080)")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.add_argument(
        "--break-after",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="when the demo service starts failing (default 20)",
    )
    serve = sub.add_parser("serve", help="run the Slack app (HTTP, or Socket Mode)")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server listens on all interfaces
    serve.add_argument(
        "--socket-mode",
        action="store_true",
        help="connect to Slack over Socket Mode (needs SLACK_APP_TOKEN)",
    )
    return parser


def cmd_serve(config: Path | None, *, host: str, port: int, socket_mode: bool) -> int:
    """Run the production app until interrupted."""
    from bot.server import serve  # noqa: PLC0415 - the Slack stack loads only for this verb
    from bot.settings import SettingsError, SlackSettings  # noqa: PLC0415

    try:
        settings = SlackSettings.from_env(socket_mode=socket_mode)
    except SettingsError as exc:
        print(f"config_invalid: {exc}", file=sys.stderr)
        return 1
    report = check_all(config, tools_for)
    if report.problems:
        for problem in report.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("opsgate did not start: fix the problems above (opsgate check).", file=sys.stderr)
        return 1
    asyncio.run(serve(config, settings, host=host, port=port, socket_mode=socket_mode))
    return 0


def cmd_check(config: Path | None) -> int:
    """Print every problem with file and line; exit 1 when there is any."""
    report = check_all(config, tools_for)
    for problem in report.problems:
        print(f"error: {problem}")
    if report.problems:
        print(f"\n{len(report.problems)} problem(s) found.")
        return 1
    assert report.config is not None
    print(f"config:   {report.config.source} (mode {report.config.mode})")
    print(
        f"runbooks: {len(report.runbooks)} in {report.config.runbooks}: "
        f"{', '.join(sorted(report.runbooks)) or 'none'}"
    )
    pack = report.config.policies or "built-in default pack"
    print(f"policies: {pack}")
    print(
        "tools:\n"
        + "\n".join("  " + line for line in tools_for(report.config).describe().splitlines())
    )
    print("ok")
    return 0


def render_plan(preview: PlanPreview) -> str:
    """A plan preview as text for a terminal."""
    lines = [
        f"Plan {preview.plan_hash}  runbook {preview.runbook_id} v{preview.runbook_version}"
        f"  mode {preview.mode}",
        f"  {preview.title}",
        f"  params: {', '.join(f'{k}={v}' for k, v in preview.params.items()) or '-'}",
        f"  knowledge: {', '.join(f'{k}@{v}' for k, v in preview.knowledge_pins.items())}",
        f"  forecast ${preview.forecast_usd:.4f} of budget ${preview.budget_usd:.4f}",
        "",
    ]
    for index, step in enumerate(preview.steps, 1):
        risk = (
            step.risk if step.risk == step.declared_risk else f"{step.declared_risk}->{step.risk}"
        )
        lines.append(f"{index}. {step.title}")
        lines.append(f"   {step.tool_action} {step.args}")
        lines.append(f"   risk {risk}; {step.verdict}: {step.reason} [{step.code}]")
        if step.expect:
            lines.append(f"   expect {step.expect}")
        if step.compensate:
            lines.append(
                f"   compensate {step.compensate.get('tool')} {step.compensate.get('args')}"
            )
    return "\n".join(lines)


async def _plan(config: Path | None, text: str, requester: str) -> int:
    control = build_control(config_path=config)
    try:
        problems = await control.start()
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        preview = control.preview(text, requester=requester)
    except OrchestrationError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await control.close()
    print(render_plan(preview))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opsgate`` console script."""
    args = _parser().parse_args(argv)
    # The demo speaks to a newcomer: only warnings reach the terminal.
    configure_logging(json=None, level=logging.WARNING if args.command == "demo" else logging.INFO)
    config = args.config or config_path()
    try:
        if args.command == "check":
            return cmd_check(config)
        if args.command == "demo":
            from bot.demo.runner import run_demo  # noqa: PLC0415 - loaded only for this verb

            asyncio.run(
                run_demo(
                    port=args.port, open_browser=not args.no_browser, break_after_s=args.break_after
                )
            )
            return 0
        if args.command == "serve":
            return cmd_serve(config, host=args.host, port=args.port, socket_mode=args.socket_mode)
        if args.command == "plan":
            return asyncio.run(_plan(config, args.text, args.requester))
    except OrchestrationError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
