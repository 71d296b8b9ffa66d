"""The ``opsgate`` command line."""

import argparse
import asyncio
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import Mode, SystemClock
from orchestration.config import OpsgateConfig, config_path, load_config
from orchestration.errors import OrchestrationError
from orchestration.telemetry import configure_logging, redact_text

if TYPE_CHECKING:
    from orchestration.views import PlanPreview

# SQLAlchemy, the store and everything behind a verb load inside the verb that uses them:
# ``opsgate --help`` and a broken config answer without them (a test pins what stays unloaded).
DEMO_PORT = 8080
SERVE_PORT = 3000
SERVE_HOST = "127.0.0.1"


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
    plan.add_argument(
        "--channel", default="", help="Slack channel id the incident opens in (rollout scopes)"
    )
    plan.add_argument(
        "--json", action="store_true", help="print the whole plan as one JSON document"
    )
    demo = sub.add_parser("demo", help="the whole flow locally: Slack sandbox in the browser")
    demo.add_argument(
        "--port", type=int, default=DEMO_PORT, help=f"sandbox page port (default {DEMO_PORT})"
    )
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.add_argument(
        "--scripted-llm",
        action="store_true",
        help="show the LLM agents with a local stand-in model playing a recorded run "
        "(OPSGATE_LLM_BASE_URL, when set, is used instead)",
    )
    demo.add_argument(
        "--break-after",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="when the demo service starts failing (default 20)",
    )
    demo.add_argument(
        "--builtin-alerts",
        action="store_true",
        help="send the alert from a built-in watcher even when Prometheus and Alertmanager "
        "are installed",
    )
    serve = sub.add_parser(
        "serve",
        help="run the Slack app (HTTP, or Socket Mode)",
        description="Run the Slack app: POST /slack/events, /alerts/alertmanager, /healthz, "
        "/readyz and /metrics over HTTP, and optionally a Socket Mode connection. Needs "
        "SLACK_BOT_TOKEN (xoxb-...) and SLACK_SIGNING_SECRET; Socket Mode needs SLACK_APP_TOKEN "
        "(xapp-...) instead of the signing secret.",
    )
    serve.add_argument(
        "--port", type=int, default=SERVE_PORT, help=f"HTTP port (default {SERVE_PORT})"
    )
    serve.add_argument(
        "--host",
        default=SERVE_HOST,
        help=f"interface to listen on (default {SERVE_HOST}: this machine only; "
        "0.0.0.0 for every interface, e.g. behind a reverse proxy or in a container)",
    )
    serve.add_argument(
        "--socket-mode",
        action="store_true",
        help="connect to Slack over Socket Mode (needs SLACK_APP_TOKEN); "
        "HTTP still serves the health and metrics routes",
    )
    digest = sub.add_parser(
        "digest", help="the daily cost and operations digest: print it, or post it once"
    )
    digest.add_argument(
        "--dry-run", action="store_true", help="print the digest; post nothing, claim nothing"
    )
    digest.add_argument(
        "--date",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the day to report (default: yesterday in digest.timezone)",
    )
    replay = sub.add_parser(
        "replay",
        help="re-run a recorded plan in a sandbox, optionally forcing a failure",
        description="Re-run a recorded plan from its pinned knowledge and recorded tool "
        "responses in a temporary copy of the store, and print it beside the original run. "
        "The live store is only read.",
    )
    replay.add_argument(
        "plan", metavar="PLAN_ID", help="plan id, or an incident id (its latest plan)"
    )
    replay.add_argument(
        "--fail-at",
        metavar="STEP[:error|timeout|status=CODE]",
        help="make every call of STEP fail this way (default error), e.g. verify:status=503",
    )
    replay.add_argument(
        "--live-readonly",
        action="store_true",
        help="let read-only actions call the real tools (everything else stays recorded)",
    )
    replay.add_argument("--json", action="store_true", help="print the report as one JSON document")
    knowledge = sub.add_parser(
        "knowledge",
        help="the stored runbook and policy versions plans are built from (reads only)",
        description="What the store holds of knowledge: every document and its versions, what "
        "a plan pinned, one version's content, and what changed between two versions. "
        "Names are kind:key (runbook:web-restart, policy:pack) or a key alone.",
    )
    kverbs = knowledge.add_subparsers(dest="knowledge_command", required=True)
    klist = kverbs.add_parser("list", help="every stored document: latest version, when changed")
    klist.add_argument(
        "--plan", metavar="PLAN_ID", help="only what this plan pinned, and if current"
    )
    klist.add_argument("--json", action="store_true", help="print JSON Lines, one document a line")
    kshow = kverbs.add_parser("show", help="one version's content (default: the latest)")
    kshow.add_argument("name", metavar="NAME[@VERSION]")
    kshow.add_argument("--json", action="store_true", help="print it as one JSON document")
    kdiff = kverbs.add_parser("diff", help="what changed between two versions (unified diff)")
    kdiff.add_argument("older", metavar="NAME@A")
    kdiff.add_argument(
        "newer", metavar="NAME@B", nargs="?", help="default: the latest version of the same name"
    )
    audit = sub.add_parser(
        "audit",
        help="the timeline of a plan, an incident or a correlation id",
        description="Who asked, which role ran what, every approval with nonce and reviewer, "
        "every credential scope, tool call, cost and failure reason, oldest first.",
    )
    audit.add_argument(
        "ref", nargs="?", metavar="PLAN_ID|INCIDENT_ID", help="a plan or incident id (or prefix)"
    )
    audit.add_argument("--correlation-id", metavar="ID", help="every record of one correlation id")
    audit.add_argument("--json", action="store_true", help="print JSON Lines, one record a line")
    rollout = sub.add_parser(
        "rollout",
        help="staged trust: each scope's stage, evidence and exit criteria (reads only)",
        description="Each rollout scope (opsgate.yaml rollout:) with its stage and days in it, "
        "judged incidents, false positive and negative rates by severity, agreement, cost per "
        "action against its bound, and which exit criteria of its stage are met.",
    )
    rverbs = rollout.add_subparsers(dest="rollout_command", required=True)
    rstatus = rverbs.add_parser("status", help="every scope now")
    rstatus.add_argument("--json", action="store_true", help="print JSON Lines, one scope a line")
    return parser


async def _audit(
    config: Path | None, ref: str | None, *, correlation_id: str | None, as_json: bool
) -> int:
    """Print the timeline of ``ref`` (or of ``correlation_id``); reads the store only."""
    from bot.reports import audit_text  # noqa: PLC0415 - loaded only for this verb
    from orchestration.db import Database, default_url  # noqa: PLC0415
    from orchestration.trail import resolve, timeline  # noqa: PLC0415

    if not ref and not correlation_id:
        print("bad_request: name a plan or incident id, or give --correlation-id", file=sys.stderr)
        return 2
    missing = _missing_sqlite_file(default_url())
    if missing is not None:
        print(f"not_found: no database at {missing}: there is nothing to audit", file=sys.stderr)
        return 1
    settings = load_config(config)  # a broken config is reported as for every verb
    archive = settings.retention
    db = Database()
    try:
        scope = await db.run(lambda s: resolve(s, ref, correlation_id=correlation_id))
        entries = await db.run(lambda s: timeline(s, scope, archive=archive))
    finally:
        await db.close()
    # A terminal is an exit too: what is printed passes the one redaction (the store holds
    # redacted records already; this keeps it so whatever a record gains later).
    if as_json:
        for entry in entries:
            print(redact_text(json.dumps(entry.line(), ensure_ascii=False)))
    else:
        print(redact_text(audit_text(scope.label, entries)))
    return 0


def _rollout_status(config: Path | None, *, as_json: bool) -> int:
    """``opsgate rollout status``: reads the store, writes nothing."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - loaded only for this verb

    from orchestration.db import default_url  # noqa: PLC0415
    from orchestration.knowledge.readonly import read_only_session  # noqa: PLC0415
    from orchestration.rollout.report import scope_status, status_text  # noqa: PLC0415

    settings = load_config(config)
    now = SystemClock().now()
    rows = None
    try:
        with read_only_session(default_url()) as session:
            if session is not None:
                rows = scope_status(session, settings.rollout, default=settings.mode, now=now)
    except SQLAlchemyError:  # a schema from before rollouts: nothing recorded yet
        rows = None
    if rows is None:  # nothing recorded yet: each scope in its configured stage
        from sqlmodel import Session, SQLModel, create_engine  # noqa: PLC0415

        empty = create_engine("sqlite://")
        SQLModel.metadata.create_all(empty)
        with Session(empty) as blank:
            rows = scope_status(blank, settings.rollout, default=settings.mode, now=now)
        if settings.rollout.scopes:
            print("note: no database yet: no evidence recorded", file=sys.stderr)
    if as_json:
        for row in rows:
            print(json.dumps(row.as_json(), ensure_ascii=False))
        return 0
    print(status_text(rows), end="")
    return 0


def _knowledge(args: argparse.Namespace) -> int:
    """``opsgate knowledge list|show|diff``: reads the store, writes nothing."""
    from orchestration.db import default_url  # noqa: PLC0415 - loaded only for this verb
    from orchestration.knowledge import inspect  # noqa: PLC0415
    from orchestration.knowledge.readonly import read_only_session  # noqa: PLC0415

    with read_only_session(default_url()) as session:
        if session is None:
            print("not_found: no database yet: nothing is stored", file=sys.stderr)
            return 1
        if args.knowledge_command == "list":
            rows = inspect.summaries(session, plan_ref=args.plan)
            if args.json:
                for row in rows:
                    print(json.dumps(row.line(), ensure_ascii=False))
            else:
                print(_knowledge_table(rows, plan=args.plan))
            return 0
        if args.knowledge_command == "show":
            doc = inspect.document(session, *inspect.parse_name(args.name))
            if args.json:
                print(json.dumps(doc.line(), indent=2, ensure_ascii=False, default=str))
            else:
                print(_document_text(doc))
            return 0
        older_name, older_version = inspect.parse_name(args.older)
        older = inspect.document(session, older_name, older_version)
        if args.newer is None:
            newer = inspect.document(session, older_name)
        else:
            newer = inspect.document(session, *inspect.parse_name(args.newer))
        if newer.pin != older.pin:
            print(f"note: comparing two documents, {older.pin} and {newer.pin}", file=sys.stderr)
        changes = inspect.diff(older, newer)
        print(
            changes or f"{older.pin}@{older.version} and @{newer.version}: the same content",
            end="" if changes else "\n",
        )
        return 0


def _document_text(doc: Any) -> str:
    latest = "the latest" if doc.version == doc.latest else f"the latest is {doc.latest}"
    head = (
        f"# {doc.pin}@{doc.version} ({latest}), stored {doc.created_at:%Y-%m-%d %H:%M} UTC\n"
        f"# from {doc.source or '(unknown)'}, sha256 {doc.content_hash[:12]}\n"
    )
    return head + ("# retired: this version is a tombstone" if doc.retired else doc.text())


def _knowledge_table(rows: "Sequence[Any]", *, plan: str | None) -> str:
    if not rows:
        return "nothing stored yet" if plan is None else f"plan {plan} pinned nothing stored"
    out = []
    for row in rows:
        changed = f"{row.changed_at:%Y-%m-%d %H:%M}"
        state = " retired" if row.retired else ""
        if row.pinned is not None:
            current = (
                "current"
                if row.pinned == row.latest and not row.retired
                else (f"stale: latest is {row.latest}{state}")
            )
            out.append(f"{row.pin}@{row.pinned}  {current}")
        else:
            out.append(
                f"{row.pin}@{row.latest}  {row.versions} version(s), changed {changed} UTC{state}"
            )
    return "\n".join(out)


async def _replay(
    config: Path | None, ref: str, *, fail_at: str | None, live_readonly: bool, as_json: bool
) -> int:
    """Replay the plan ``ref`` in a sandbox and print the comparison."""
    from bot.main import build_control  # noqa: PLC0415 - the runtime loads only when used
    from bot.reports import replay_text  # noqa: PLC0415 - loaded only for this verb
    from orchestration.db import default_url  # noqa: PLC0415
    from orchestration.replay import FailAt, load_recording, replay  # noqa: PLC0415

    forced = FailAt.parse(fail_at) if fail_at else None
    missing = _missing_sqlite_file(default_url())
    if missing is not None:
        print(f"not_found: no database at {missing}: there is nothing to replay", file=sys.stderr)
        return 1
    settings = load_config(config)
    control = build_control(settings)
    try:
        recording = await control.db.run(lambda s: load_recording(s, ref))
        report = await replay(
            recording,
            config=settings,
            tools=control.rt.tools,
            signer=control.rt.signer,
            pack=control.rt.pack,
            fail_at=forced,
            live_readonly=live_readonly,
        )
    finally:
        await control.close()
    if as_json:  # redacted as every exit (--live-readonly answers come from live tools)
        print(redact_text(json.dumps(report.as_json(), indent=2, ensure_ascii=False)))
    else:
        print(redact_text(replay_text(report)))
    return 0


def _no_digest_reason(settings: OpsgateConfig) -> str | None:
    """Why no digest would be posted with ``settings``, or None when one would be."""
    builtin = settings.source == OpsgateConfig().source
    where = (
        "./opsgate.yaml (none was found: the built-in defaults are in use)"
        if builtin
        else settings.source
    )
    if not settings.digest.enabled:
        return f"digest.enabled is false in {where}"
    if settings.digest_channel() is None:
        return f"no channel is configured. Set digest.channel or slack.ops_channel in {where}"
    return None


def digest_destination(config: Path | None) -> str:
    """Where and when the digest would be posted, or that it would not be and why."""
    settings = load_config(config)
    reason = _no_digest_reason(settings)
    if reason is not None:
        return f"No digest would be posted: {reason}."
    digest = settings.digest
    channel = settings.digest_channel()
    return f"It would be posted to {channel} daily at {digest.time} {digest.timezone}."


async def digest_dry_run(config: Path | None, day: date | None = None) -> str:
    """The plain-text digest of ``day`` read from the database; changes nothing."""
    from bot.digest_text import digest_text  # noqa: PLC0415 - loaded only for this verb
    from orchestration.db import Database, default_url  # noqa: PLC0415
    from orchestration.digest import build_digest, previous_day  # noqa: PLC0415

    whole = load_config(config)
    settings = whole.digest
    tz = settings.tz
    missing = _missing_sqlite_file(default_url())
    if missing is not None:  # starting a database would create it: a dry run creates nothing
        return f"No database at {missing} yet: there is nothing to report."
    db = Database()
    try:
        await db.start()
        when = day or previous_day(SystemClock().now(), tz)
        rate = settings.people_usd_per_hour
        digest = await db.run(
            lambda session: build_digest(
                session,
                day=when,
                tz=tz,
                people_usd_per_hour=rate,
                rollout=whole.rollout,
                mode=whole.mode,
            )
        )
    finally:
        await db.close()
    return digest_text(digest)


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist yet; None otherwise."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - loaded only with a store

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.is_file() else path


async def _post_digest(config: Path | None, day: date | None) -> int:
    """Post the digest once (honouring the claim), as the scheduled job would."""
    from slack_sdk.web.async_client import AsyncWebClient  # noqa: PLC0415

    from bot.digest_job import DigestPoster  # noqa: PLC0415 - the Slack stack loads only here
    from bot.main import build_control  # noqa: PLC0415
    from bot.settings import SLACK_API_DEFAULT, bot_token_problem  # noqa: PLC0415
    from orchestration.digest import previous_day  # noqa: PLC0415

    reason = _no_digest_reason(load_config(config))
    if reason is not None:
        print(f"Not posted: {reason}.", file=sys.stderr)
        return 1
    token = os.environ.get("SLACK_BOT_TOKEN", "")
    if (problem := bot_token_problem(token)) is not None:
        print(f"config_invalid: {problem}", file=sys.stderr)
        return 1
    control = build_control(config_path=config)
    client = AsyncWebClient(
        token=token, base_url=os.environ.get("OPSGATE_SLACK_API_URL", SLACK_API_DEFAULT)
    )
    poster = DigestPoster(control=control, client=client)
    assert poster.channel is not None  # _no_digest_reason said there is one
    try:
        await control.db.start()
        when = day or previous_day(control.clock.now(), poster.config.tz)
        posted = await poster.post(when)
    finally:
        if client.session is not None:
            await client.session.close()
        await control.close()
    if posted:
        print(f"posted the digest of {when.isoformat()} to {poster.channel}")
        return 0
    print(
        f"not posted: the digest of {when.isoformat()} for {poster.channel} was already posted "
        "or is being posted by another replica (or posting failed; see the log)"
    )
    return 0


def cmd_digest(config: Path | None, *, dry_run: bool, day: date | None) -> int:
    """Print the digest (``--dry-run``), or post it once."""
    if dry_run:
        print(asyncio.run(digest_dry_run(config, day)))
        print(f"\n(dry run: nothing was posted)\n{digest_destination(config)}")
        return 0
    return asyncio.run(_post_digest(config, day))


def cmd_serve(config: Path | None, *, host: str, port: int, socket_mode: bool) -> int:
    """Run the production app until interrupted."""
    from bot.main import tools_for  # noqa: PLC0415
    from bot.server import serve  # noqa: PLC0415 - the Slack stack loads only for this verb
    from bot.settings import SettingsError, SlackSettings  # noqa: PLC0415
    from orchestration.checks import check_all  # noqa: PLC0415

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
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        asyncio.run(serve(config, settings, host=host, port=port, socket_mode=socket_mode))
    except OSError as exc:
        return _cannot_listen(exc, host=host, port=port)
    return 0


def _cannot_listen(exc: OSError, *, host: str, port: int) -> int:
    """One plain line for a port that cannot be bound (re-raise anything else); exit code 1."""
    if exc.errno == errno.EADDRINUSE:
        print(f"port {port} is taken: try --port {_free_port_near(host, port)}", file=sys.stderr)
    elif exc.errno == errno.EACCES:
        suggestion = _free_port_near(host, port)
        print(f"port {port} needs privileges here: try --port {suggestion}", file=sys.stderr)
    elif exc.errno == errno.EADDRNOTAVAIL:
        print(f"cannot listen on {host}: no interface has this address", file=sys.stderr)
    else:
        raise exc
    return 1


def _free_port_near(host: str, port: int) -> int:
    """The first port above ``port`` that ``host`` can bind now (a suggestion, not a lease)."""
    start = port if port >= 1024 else 8000
    for candidate in range(start + 1, min(start + 100, 65536)):
        with socket.socket() as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return 0 if port == 0 else start + 1


def cmd_check(config: Path | None) -> int:
    """Print every problem with file and line; exit 1 when there is any."""
    from bot.main import tools_for  # noqa: PLC0415 - the runtime loads only for the verbs using it
    from orchestration.checks import check_all  # noqa: PLC0415

    report = check_all(config, tools_for)
    for problem in report.problems:
        print(f"error: {problem}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    if report.problems:
        print(f"\n{len(report.problems)} problem(s) found.")
        return 1
    assert report.config is not None
    print(f"config:   {report.config.source} (mode {report.config.mode})")
    print(
        f"runbooks: {len(report.runbooks)} in {report.config.runbooks}: "
        f"{', '.join(sorted(report.runbooks)) or 'none'}"
        + (f" (retired: {', '.join(report.retired)})" if report.retired else "")
    )
    print(
        f"playbooks: {len(report.playbooks)} in {report.config.playbook_folder()}: "
        f"{', '.join(sorted(report.playbooks)) or 'none'}"
    )
    pack = report.config.policies or "built-in default pack"
    print(f"policies: {pack}")
    print(
        "tools:\n"
        + "\n".join("  " + line for line in tools_for(report.config).describe().splitlines())
    )
    print(f"ok, with {len(report.warnings)} warning(s) above" if report.warnings else "ok")
    return 0


def render_plan(preview: "PlanPreview", notes: Sequence[str] = ()) -> str:
    """A plan preview as text for a terminal; ``notes`` say how the files compare with storage."""
    lines = [
        f"Plan {preview.plan_hash}  runbook {preview.runbook_id} v{preview.runbook_version}"
        f"  mode {preview.mode}",
        f"  {preview.title}",
        f"  params: {', '.join(f'{k}={v}' for k, v in preview.params.items()) or '-'}",
        f"  knowledge: {', '.join(f'{k}@{v}' for k, v in preview.knowledge_pins.items())}",
        *(f"    note: {note}" for note in notes),
        f"  forecast ${preview.forecast_usd:.4f} of budget ${preview.budget_usd:.4f}",
        *_planner_lines(preview),
        "",
    ]
    for index, step in enumerate(preview.steps, 1):
        risk = (
            step.risk if step.risk == step.declared_risk else f"{step.declared_risk}->{step.risk}"
        )
        lines.append(f"{index}. {step.title}")
        lines.append(f"   {step.tool_action} {_json(step.args)}")
        lines.append(f"   risk {risk}; {step.verdict}: {step.reason} [{step.code}]")
        if step.stage:
            lines.append(f"   stage {step.stage}")
        if step.expect:
            lines.append(f"   expect {_json(step.expect)}")
        if preview.rationales and step.key in preview.rationales:
            lines.append(f"   why: {preview.rationales[step.key]}")
        if step.compensate:
            lines.append(
                f"   compensate {step.compensate.get('tool')} "
                f"{_json(step.compensate.get('args') or {})}"
            )
    return "\n".join(lines)


def _planner_lines(preview: "PlanPreview") -> list[str]:
    """Which planner made the plan and what its model calls cost (only with ``llm:``)."""
    if preview.planner is None:
        return []
    if preview.planner != "llm" or preview.llm is None:
        return [f"  planner: {preview.planner}"]
    llm = preview.llm
    roles = ", ".join(
        f"{role} {row['tokens']} tokens ${row['usd']:.6f}"
        for role, row in sorted(llm.get("by_role", {}).items())
    )
    return [
        f"  planner: llm (model {llm['model']}, prompt v{llm['prompt_version']})",
        f"  model calls: {llm['calls']}; tokens {llm['tokens']} ({llm['cached_tokens']} cached); "
        f"cost ${llm['usd']:.6f}" + (f" ({roles})" if roles else ""),
    ]


def plan_json(preview: "PlanPreview", notes: Sequence[str] = ()) -> str:
    """A plan preview as one JSON document (``opsgate plan --json``)."""
    # Without ``llm:`` the document is what it always was.
    unset = {"planner", "llm", "rationales"} if preview.planner is None else set()
    document = {**preview.model_dump(mode="json", exclude=unset), "notes": list(notes)}
    return json.dumps(document, indent=2, ensure_ascii=False)


def _json(value: object) -> str:
    """Args as JSON on one line (``true``, double quotes), as a runbook author writes them."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


async def _plan(
    config: Path | None, text: str, requester: str, *, as_json: bool, channel: str = ""
) -> int:
    """Preview from this machine's files; the database, if any, is only read for versions.

    Nothing is written anywhere: no schema, no knowledge version, no audit record.
    """
    from bot.main import build_control  # noqa: PLC0415 - the runtime loads only when used
    from orchestration.db import default_url  # noqa: PLC0415
    from orchestration.knowledge import preview_snapshot, read_files, read_stored  # noqa: PLC0415

    settings = load_config(config)
    # The preview needs no database of its own: an in-memory engine stands in, never opened.
    control = build_control(settings, database_url="sqlite://")
    try:
        files = read_files(settings.runbooks, settings.policies, builtin_pack=control.rt.pack)
        for problem in files.problems:
            print(f"warning: {problem}", file=sys.stderr)
        stored = await asyncio.to_thread(read_stored, default_url())
        snapshot, notes = preview_snapshot(files, stored)
        stages = await asyncio.to_thread(_stored_stages, settings)
        preview = await control.preview_agents(
            text, requester=requester, snapshot=snapshot, stages=stages, channel=channel
        )
    except OrchestrationError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await control.close()
    print(plan_json(preview, notes) if as_json else render_plan(preview, notes))
    return 0


def _stored_stages(settings: OpsgateConfig) -> dict[str, Mode]:
    """The stage each rollout scope is in now, read from the database (empty without one)."""
    if not settings.rollout.scopes:
        return {}
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from orchestration.db import default_url  # noqa: PLC0415
    from orchestration.knowledge.readonly import read_only_session  # noqa: PLC0415
    from orchestration.rollout.stages import current_stages  # noqa: PLC0415

    try:
        with read_only_session(default_url()) as session:
            return current_stages(session, settings.rollout) if session is not None else {}
    except SQLAlchemyError:  # no schema yet: each scope is in its configured stage
        return {}


def _demo(args: argparse.Namespace) -> int:
    from bot.demo.runner import run_demo  # noqa: PLC0415 - loaded only for this verb

    try:
        asyncio.run(
            run_demo(
                port=args.port,
                open_browser=not args.no_browser,
                break_after_s=args.break_after,
                real_monitoring=False if args.builtin_alerts else None,
                scripted_llm=args.scripted_llm,
            )
        )
    except OSError as exc:
        return _cannot_listen(exc, host="127.0.0.1", port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opsgate`` console script."""
    args = _parser().parse_args(argv)
    # Only the server logs its routine: the other verbs print their own answer, so only
    # warnings reach the terminal (a newcomer running the demo, a dry run, a check).
    # The demo's terminal is a person's, whatever it is piped to: console lines, never JSON.
    configure_logging(
        json=False if args.command == "demo" else None,
        level=logging.INFO if args.command == "serve" else logging.WARNING,
    )
    config = args.config or config_path()
    verbs: dict[str, Callable[[], int]] = {
        "check": lambda: cmd_check(config),
        "demo": lambda: _demo(args),
        "serve": lambda: cmd_serve(
            config, host=args.host, port=args.port, socket_mode=args.socket_mode
        ),
        "plan": lambda: asyncio.run(
            _plan(config, args.text, args.requester, as_json=args.json, channel=args.channel)
        ),
        "digest": lambda: cmd_digest(config, dry_run=args.dry_run, day=args.date),
        "knowledge": lambda: _knowledge(args),
        "rollout": lambda: _rollout_status(config, as_json=args.json),
        "audit": lambda: asyncio.run(
            _audit(config, args.ref, correlation_id=args.correlation_id, as_json=args.json)
        ),
        "replay": lambda: asyncio.run(
            _replay(
                config,
                args.plan,
                fail_at=args.fail_at,
                live_readonly=args.live_readonly,
                as_json=args.json,
            )
        ),
    }
    verb = verbs.get(args.command)
    if verb is None:
        return 2
    try:
        return verb()
    except OrchestrationError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `opsgate check | head`: the reader left early, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's docs advise
        return 1


if __name__ == "__main__":
    sys.exit(main())
