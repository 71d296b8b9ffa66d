"""The alertmanager adapter against a real Alertmanager: silences, their allow-list, alerts."""

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from adapters import ErrorCode, GrantError, GrantSigner, ToolCall, guarded
from adapters.alertmanager import ALERTMANAGER_SPEC, AlertmanagerTool
from adapters.errors import MatcherNotAllowed, RequestRefused
from adapters.testing import InMemoryBreakerStore
from common import FakeClock
from tests.adapters.conftest import LiveMonitoring, grant_for

ALLOW = {"alertname": ["ServiceErrorRate", "Test*"], "service": ["*"], "case": ["*"]}


def tool(url: str, **extra: Any) -> AlertmanagerTool:
    return AlertmanagerTool.from_config({"base_url": url, "allow_matchers": ALLOW, **extra})


def call(action: str, key: str = "k1", **args: Any) -> ToolCall:
    return ToolCall(tool="alertmanager", action=action, args=args, idempotency_key=key)


def matchers(case: str) -> list[dict[str, Any]]:
    """Matchers unique to one test, so tests sharing the server do not see each other."""
    return [{"name": "alertname", "value": "TestAlert"}, {"name": "case", "value": case}]


async def silences(url: str, case: str) -> list[dict[str, Any]]:
    """The server's silences for ``case`` (straight from its API, not through the adapter)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v2/silences", params={"filter": f'case="{case}"'}) as resp,
    ):
        assert resp.status == 200
        found: list[dict[str, Any]] = await resp.json()
        return found


def live(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in found if s["status"]["state"] in {"active", "pending"}]


async def test_silence_then_expire_by_matchers(live_monitoring: LiveMonitoring) -> None:
    """silence answers the silenceID; a retry finds it (no second one); expire by matchers."""
    url = live_monitoring.alertmanager_url
    case = uuid.uuid4().hex[:8]
    am = tool(url)
    try:
        args = {"matchers": matchers(case), "duration": "10m", "comment": "restart of api"}
        first = await am.invoke(call("silence", **args), None)
        sid = first.output["silence_id"]
        assert first.output["json"]["silenceID"] == sid
        assert f"silenced as {sid}" in first.summary
        again = await am.invoke(call("silence", **args), None)  # a retry: same idempotency key
        assert again.output["silence_id"] == sid
        assert again.output["json"]["existing"]
        other = await am.invoke(call("silence", key="k2", **args), None)
        assert other.output["silence_id"] != sid
        found = live(await silences(url, case))
        assert {s["id"] for s in found} == {sid, other.output["silence_id"]}
        assert all(s["createdBy"] == "opsgate" for s in found)
        assert "[opsgate:k1]" in next(s for s in found if s["id"] == sid)["comment"]

        expired = await am.invoke(call("expire_silence", matchers=matchers(case)), None)
        assert sorted(expired.output["json"]["expired"]) == sorted(s["id"] for s in found)
        assert live(await silences(url, case)) == []
        nothing = await am.invoke(call("expire_silence", matchers=matchers(case)), None)
        assert nothing.output["json"]["expired"] == []
        assert "no live silence" in nothing.summary
    finally:
        await am.aclose()


async def test_expire_by_id_is_idempotent_and_unknown_ids_are_refused(
    live_monitoring: LiveMonitoring,
) -> None:
    url = live_monitoring.alertmanager_url
    case = uuid.uuid4().hex[:8]
    am = tool(url)
    try:
        made = await am.invoke(
            call("silence", matchers=matchers(case), duration="5m", comment="t"), None
        )
        sid = made.output["silence_id"]
        done = await am.invoke(call("expire_silence", id=sid), None)
        assert done.output["json"]["expired"] == [sid]
        again = await am.invoke(call("expire_silence", id=sid), None)
        assert again.output["json"]["expired"] == []
        with pytest.raises(RequestRefused) as caught:
            await am.invoke(call("expire_silence", id=str(uuid.uuid4())), None)
        assert "has no silence" in caught.value.message
    finally:
        await am.aclose()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ([{"name": "team", "value": "payments"}], "label 'team' is not in"),
        ([{"name": "alertname", "value": "DiskFull"}], "value not allowed for label 'alertname'"),
        ([{"name": "alertname", "value": ".*", "isRegex": True}], "regex matcher"),
        (
            [{"name": "alertname", "value": "ServiceErrorRate", "isEqual": False}],
            "negative matcher",
        ),
    ],
)
async def test_a_silence_outside_the_allow_list_is_refused_before_any_request(
    live_monitoring: LiveMonitoring, bad: list[dict[str, Any]], words: str
) -> None:
    """Nothing reaches Alertmanager: its silence list is unchanged."""
    url = live_monitoring.alertmanager_url
    case = uuid.uuid4().hex[:8]
    am = tool(url)
    try:
        with pytest.raises(MatcherNotAllowed) as caught:
            await am.invoke(
                call("silence", matchers=[*bad, {"name": "case", "value": case}], comment="x"),
                None,
            )
        assert caught.value.code == ErrorCode.MATCHER_NOT_ALLOWED
        assert words in caught.value.message
        assert await silences(url, case) == []
    finally:
        await am.aclose()


async def test_silence_without_a_grant_is_refused_by_the_guards(
    live_monitoring: LiveMonitoring,
) -> None:
    """A write action with no grant never runs; with its grant it does."""
    url = live_monitoring.alertmanager_url
    case = uuid.uuid4().hex[:8]
    clock = FakeClock()
    signer = GrantSigner(b"g" * 32)
    am = guarded(tool(url), signer=signer, clock=clock, breakers=InMemoryBreakerStore(clock))
    try:
        silence = call("silence", matchers=matchers(case), duration="1m", comment="x")
        with pytest.raises(GrantError) as caught:
            await am.invoke(silence, None)
        assert caught.value.code == ErrorCode.GRANT_MISSING
        assert await silences(url, case) == []
        await am.invoke(silence, grant_for(silence, signer, clock))
        assert len(live(await silences(url, case))) == 1
    finally:
        await am.aclose()


async def test_alerts_lists_the_fired_rule_and_shows_it_suppressed_while_silenced(
    live_monitoring: LiveMonitoring,
) -> None:
    """Prometheus's rule reaches Alertmanager; a silence on it turns it suppressed."""
    am = tool(live_monitoring.alertmanager_url)
    rule = [{"name": "alertname", "value": "ServiceErrorRate"}, {"name": "service", "value": "api"}]
    try:
        deadline = time.monotonic() + 60
        result = await am.invoke(call("alerts", matchers=rule), None)
        while not result.output["json"]["alerts"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            result = await am.invoke(call("alerts", matchers=rule), None)
        assert result.output["json"]["alerts"], "the rule's alert never reached Alertmanager"
        assert "1 active" in result.summary
        assert 'ServiceErrorRate{service="api"' in result.summary
        made = await am.invoke(call("silence", matchers=rule, duration="2m", comment="t"), None)
        try:
            result = await am.invoke(call("alerts", matchers=rule), None)
            while "suppressed" not in result.summary and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                result = await am.invoke(call("alerts", matchers=rule), None)
            assert "1 suppressed" in result.summary
        finally:
            await am.invoke(call("expire_silence", id=made.output["silence_id"]), None)
    finally:
        await am.aclose()


def test_spec_declares_risks_and_compensation() -> None:
    silence = ALERTMANAGER_SPEC.action("silence")
    assert silence.risk == "medium"
    assert not silence.read_only
    assert silence.compensation == "expire_silence"
    assert ALERTMANAGER_SPEC.action("alerts").read_only
