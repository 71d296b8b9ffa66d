"""OTLP export: a plan's spans reach an OTLP/HTTP receiver, decoded with opentelemetry-proto."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from adapters.secrets import register_environment_secrets
from common import FakeClock
from common.redaction import redact_text
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.otlp import span_id_of, trace_id_of
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)


class Receiver:
    """An OTLP/HTTP traces endpoint: POST /v1/traces with a protobuf body, as collectors take it."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text="protobuf only")
        decoded = ExportTraceServiceRequest()
        decoded.ParseFromString(await request.read())  # gzip is decoded by aiohttp
        self.requests.append(decoded)
        self.headers.append(dict(request.headers))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def spans(self) -> list[Any]:
        return [
            span
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    svc = DemoService()
    await svc.start()
    yield svc
    await svc.stop()


async def run_restart(control: ControlPlane) -> str:
    """Open the checkout incident and approve its restart twice; the plan's id."""
    opened = await control.open_incident(
        text="checkout-api is down", requester=REQUESTER, channel="C1"
    )
    trail = await control.audit_trail(opened.plan_id)
    nonce = next(e.nonce for e in trail if e.event == "approval_requested")
    assert nonce is not None
    for voter in (APPROVER_A, APPROVER_B):
        await control.vote(nonce=nonce, voter=voter, choice=VoteChoice.APPROVE)
    return opened.plan_id


async def test_spans_reach_the_receiver_with_opsgates_ids(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    service: DemoService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team-key=otlp-key-0123456789")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "opsgate-test")
        write_runbook(tmp_path / "runbooks", service.port)
        config = make_config(tmp_path / "runbooks", approvers=[APPROVER_A, APPROVER_B])
        control = await make_control(db_url, config, clock)
        assert control.span_export is not None
        try:
            plan_id = await run_restart(control)
            stored = await control.spans(plan_id)
            plan = (await control.plan_view(plan_id)).model_dump(mode="json")
        finally:
            await control.close()  # flushes the batch processor

        assert receiver.requests, "nothing was exported"
        assert receiver.headers[0]["x-team-key"] == "otlp-key-0123456789"
        resource = {
            kv.key: kv.value.string_value
            for kv in receiver.requests[0].resource_spans[0].resource.attributes
        }
        assert resource["service.name"] == "opsgate-test"
        got = receiver.spans()
        correlation = {attrs(s).get("opsgate.correlation_id") for s in got}
        assert len(correlation) == 1
        cid = correlation.pop()
        assert plan["status"] == "succeeded", plan["status"]
        # the OTLP trace id is the correlation id itself
        assert all(s.trace_id == bytes.fromhex(cid) for s in got)
        assert trace_id_of(cid) == int(cid, 16)
        by_id = {s.span_id.hex(): s for s in got}
        # every stored span of the plan went out, under its own id, with its parent
        assert {s.id for s in stored} <= set(by_id)
        for row in stored:
            sent = by_id[row.id]
            assert sent.name == row.name
            assert sent.parent_span_id.hex() == (
                f"{span_id_of(row.parent_id):016x}" if row.parent_id else ""
            )
            assert attrs(sent)["opsgate.plan_id"] == plan_id
            assert sent.end_time_unix_nano - sent.start_time_unix_nano == pytest.approx(
                row.duration_ms * 1e6, abs=2000
            )
        steps = [s for s in got if attrs(s)["opsgate.kind"] == "step"]
        calls = [s for s in got if attrs(s)["opsgate.kind"] == "tool_call"]
        plans = [s for s in got if attrs(s)["opsgate.kind"] == "plan"]
        assert len(plans) == 1
        assert plans[0].status.code == plans[0].status.STATUS_CODE_OK
        assert {attrs(s)["opsgate.step_id"] for s in steps} >= {
            attrs(c)["opsgate.step_id"] for c in calls
        }
        assert all("opsgate.role" in attrs(s) for s in got)
        restart = next(c for c in calls if attrs(c)["opsgate.tool"] == "http.post")
        assert attrs(restart)["opsgate.attempt"] == 1
        assert "opsgate.cost_usd" in attrs(restart)
        titles = {s.name for s in steps}
        assert "Restart checkout-api" in titles


def test_without_the_variable_no_exporter_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.otlp import SpanExport  # noqa: PLC0415

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert SpanExport.from_env() is None


async def test_no_exporter_and_no_collection_by_default(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    write_runbook(tmp_path / "runbooks", 9)
    control = await make_control(db_url, make_config(tmp_path / "runbooks"), clock)
    try:
        assert control.span_export is None
        assert control.db.on_spans is None
    finally:
        await control.close()


async def test_a_replay_sandbox_exports_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    write_runbook(tmp_path / "runbooks", 9)
    live = await make_control(db_url, make_config(tmp_path / "runbooks"), clock)
    sandbox = ControlPlane(
        db=live.db,
        config=live.config,
        tools=live.rt.tools,
        pack=live.rt.pack,
        signer=live.rt.signer,
        clock=clock,
        export_spans=False,
    )
    try:
        assert live.span_export is not None
        assert sandbox.span_export is None
    finally:
        await live.close()


def test_header_values_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=hc-secret-value-42")
    register_environment_secrets()
    assert "hc-secret-value-42" not in redact_text("sent with hc-secret-value-42")


def test_ids_that_are_not_hex_are_hashed_stably() -> None:
    assert trace_id_of("alert:abc") == trace_id_of("alert:abc") != 0
    assert trace_id_of("alert:abc") < 2**128
    assert span_id_of("p" * 16) == span_id_of("p" * 16) != 0
    assert span_id_of("p" * 16) < 2**64
    assert span_id_of("00000000000000ff") == 255


async def test_a_rolled_back_unit_exports_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.enums import SpanKind  # noqa: PLC0415
    from orchestration.records import Ctx, span  # noqa: PLC0415

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    write_runbook(tmp_path / "runbooks", 9)
    control = await make_control(db_url, make_config(tmp_path / "runbooks"), clock)
    sent: list[list[dict[str, Any]]] = []
    control.db.on_spans = sent.append
    ctx = Ctx(correlation_id="c" * 32, now=clock.now())

    def record(session: Any, *, fail: bool) -> None:
        span(session, ctx, kind=SpanKind.STEP, name="x", started_at=ctx.now, ended_at=ctx.now)
        if fail:
            raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            await control.db.run(lambda s: record(s, fail=True))
        assert sent == []
        await control.db.run(lambda s: record(s, fail=False))
        assert len(sent) == 1
        assert sent[0][0]["trace_id"] == "c" * 32
        assert sent[0][0]["role"] == "system"
    finally:
        control.db.on_spans = None
        await control.close()
