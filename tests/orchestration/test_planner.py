"""The Planner: matching, parameters, the stable winner rule and deterministic plan hashes."""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import args_hash
from orchestration.errors import NoMatch, OrchestrationError
from orchestration.knowledge import KnowledgeSnapshot
from orchestration.planner import build, chosen_runbook, closest, plan, rank
from orchestration.runbooks import Runbook, load_folder

SHIPPED = Path(__file__).resolve().parents[2] / "runbooks"

SERVICE = r"(?P<service>[a-z][a-z0-9-]{1,40})"


def make_runbook(rb_id: str, **overrides: Any) -> Runbook:
    """A valid runbook named ``rb_id``; keyword arguments replace top-level fields."""
    data: dict[str, Any] = {
        "id": rb_id,
        "version": 1,
        "title": f"Runbook {rb_id}",
        "match": {"keywords": ["down"], "patterns": [rf"{SERVICE} is down"]},
        "steps": [
            {
                "id": "probe",
                "title": "Probe {service}",
                "tool": "http.get",
                "args": {"url": "http://127.0.0.1/svc/{service}/health"},
                "risk": "low",
            }
        ],
    }
    data.update(overrides)
    return Runbook.model_validate(data)


def keyword_runbook(rb_id: str, keywords: list[str]) -> Runbook:
    """A runbook without parameters that matches on keywords only."""
    return make_runbook(
        rb_id,
        match={"keywords": keywords},
        steps=[{"id": "page", "title": "Page on-call", "tool": "http.post", "risk": "low"}],
    )


def snapshot(*runbooks: Runbook, versions: dict[str, int] | None = None) -> KnowledgeSnapshot:
    return KnowledgeSnapshot(runbooks={rb.id: rb for rb in runbooks}, versions=versions or {})


def shipped_snapshot(versions: dict[str, int] | None = None) -> KnowledgeSnapshot:
    runbooks, problems = load_folder(SHIPPED)
    assert not problems
    pins = {"runbook:web-restart": 1, "runbook:cache-flush": 1, "policy:pack": 1}
    return KnowledgeSnapshot(runbooks=runbooks, versions=versions or pins)


SHIPPED_SNAPSHOT = shipped_snapshot()

# --- matching and parameters -------------------------------------------------------------


def test_named_groups_of_matching_patterns_become_params_and_fill_every_step_field() -> None:
    runbook = make_runbook(
        "regional",
        match={"patterns": [rf"{SERVICE} is down in (?P<region>[a-z]{{2}}-[a-z]+)"]},
        steps=[
            {
                "id": "restart",
                "title": "Restart {service} in {region}",
                "tool": "http.post",
                "args": {"url": "http://127.0.0.1/{region}/{service}", "tags": ["{service}"]},
                "risk": "high",
                "compensate": {"tool": "http.post", "args": {"svc": "{service}"}},
            }
        ],
    )
    draft = plan(snapshot(runbook), "checkout-api is down in eu-west since noon")
    assert draft.params == {"service": "checkout-api", "region": "eu-west"}
    step = draft.steps[0]
    assert step.title == "Restart checkout-api in eu-west"
    assert step.args == {"url": "http://127.0.0.1/eu-west/checkout-api", "tags": ["checkout-api"]}
    assert step.args_hash == args_hash("http.post", step.args)
    assert step.compensate == {
        "tool": "http.post",
        "args": {"svc": "checkout-api"},
        "title": "Undo Restart checkout-api in eu-west",
        "risk": "medium",
    }


def test_group_that_did_not_participate_in_the_match_is_not_a_param() -> None:
    runbook = make_runbook(
        "optional", match={"patterns": [rf"{SERVICE} is down( in (?P<region>[a-z-]+))?"]}
    )
    draft = plan(snapshot(runbook), "billing is down")
    assert draft.params == {"service": "billing"}


def test_first_pattern_to_capture_a_group_wins_over_later_patterns() -> None:
    runbook = make_runbook(
        "two-patterns",
        match={"patterns": [rf"{SERVICE} is down", r"restart (?P<service>[a-z]+)"]},
    )
    draft = plan(snapshot(runbook), "please restart other, api is down")
    assert draft.params == {"service": "api"}
    assert draft.score == 20


def test_keywords_alone_match_a_runbook_that_needs_no_params() -> None:
    draft = plan(snapshot(keyword_runbook("pager", ["outage"])), "Big OUTAGE in prod")
    assert draft.runbook_id == "pager"
    assert draft.score == 1


def test_keywords_alone_do_not_match_a_runbook_that_needs_params() -> None:
    runbook = make_runbook("needs-service")  # keyword "down", pattern needs "<svc> is down"
    with pytest.raises(NoMatch):
        plan(snapshot(runbook), "everything went down")


def test_keywords_match_whole_words_only() -> None:
    with pytest.raises(NoMatch):
        plan(snapshot(keyword_runbook("pager", ["outage"])), "outages are rare")


def test_param_that_fails_its_runbook_pattern_raises_param_invalid() -> None:
    # The pattern is case-insensitive, the shipped web-restart param pattern is lowercase only.
    with pytest.raises(OrchestrationError) as caught:
        plan(SHIPPED_SNAPSHOT, "Checkout-API is down")
    assert caught.value.code == "param_invalid"
    assert "service" in caught.value.message
    assert "web-restart" in caught.value.message


def test_param_is_checked_against_the_default_pattern_when_the_runbook_declares_none() -> None:
    runbook = make_runbook("loose", match={"patterns": [r"(?P<service>\S+) is down"]})
    with pytest.raises(OrchestrationError) as caught:
        plan(snapshot(runbook), "/etc/passwd is down")
    assert caught.value.code == "param_invalid"


def test_build_validates_params_passed_directly() -> None:
    runbook = SHIPPED_SNAPSHOT.runbooks["web-restart"]
    with pytest.raises(OrchestrationError) as caught:
        build(SHIPPED_SNAPSHOT, runbook, {"service": "a b"})
    assert caught.value.code == "param_invalid"


def test_build_with_a_missing_param_raises_param_invalid() -> None:
    runbook = SHIPPED_SNAPSHOT.runbooks["web-restart"]
    with pytest.raises(OrchestrationError) as caught:
        build(SHIPPED_SNAPSHOT, runbook, {})
    assert caught.value.code == "param_invalid"
    assert "'service'" in caught.value.message


# --- the stable winner rule ----------------------------------------------------------------


def test_pattern_match_outscores_keyword_only_match() -> None:
    by_keywords = keyword_runbook("a-keywords", ["down", "api"])
    by_pattern = make_runbook("z-pattern", match={"patterns": [rf"{SERVICE} is down"]})
    ranked = rank(snapshot(by_keywords, by_pattern), "api is down")
    assert [(c.runbook_id, c.score) for c in ranked] == [("z-pattern", 10), ("a-keywords", 2)]
    assert plan(snapshot(by_keywords, by_pattern), "api is down").runbook_id == "z-pattern"


def test_equal_score_goes_to_more_keywords_before_id() -> None:
    words = [f"k{i}" for i in range(10)]
    # one pattern (10) versus ten keywords (10): same score, the keyword runbook wins
    by_pattern = make_runbook("a-pattern", match={"patterns": [rf"{SERVICE} is down"]})
    by_keywords = keyword_runbook("b-keywords", words)
    text = "api is down " + " ".join(words)
    ranked = rank(snapshot(by_pattern, by_keywords), text)
    assert [(c.runbook_id, c.score, c.keywords) for c in ranked] == [
        ("b-keywords", 10, 10),
        ("a-pattern", 10, 0),
    ]


def test_full_tie_goes_to_alphabetical_id_whatever_the_load_order() -> None:
    first = keyword_runbook("alpha", ["outage"])
    second = keyword_runbook("beta", ["outage"])
    for ordered in ((first, second), (second, first)):
        assert [c.runbook_id for c in rank(snapshot(*ordered), "outage")] == ["alpha", "beta"]
        assert plan(snapshot(*ordered), "outage").runbook_id == "alpha"


def test_plan_score_is_the_winning_candidates_score() -> None:
    draft = plan(SHIPPED_SNAPSHOT, "checkout-api is down with 5xx")
    assert draft.runbook_id == "web-restart"
    assert draft.score == 12  # one pattern + "down" + "5xx"


# --- no match ------------------------------------------------------------------------------


def test_no_match_names_the_closest_runbooks() -> None:
    with pytest.raises(NoMatch) as caught:
        plan(SHIPPED_SNAPSHOT, "cache of search looks old")
    assert caught.value.code == "no_match"
    assert "Closest runbooks: cache-flush, web-restart." in caught.value.message


def test_no_match_without_runbooks_says_none_are_loaded() -> None:
    with pytest.raises(NoMatch, match="No runbooks are loaded"):
        plan(snapshot(), "api is down")


def test_closest_orders_by_similarity_and_respects_the_limit() -> None:
    assert closest(SHIPPED_SNAPSHOT, "web service restart") == ["web-restart", "cache-flush"]
    assert closest(SHIPPED_SNAPSHOT, "stale cache", limit=1) == ["cache-flush"]


# --- determinism and the plan hash ---------------------------------------------------------

service_names = st.from_regex(r"[a-z][a-z0-9-]{1,20}", fullmatch=True)
extra_words = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12), max_size=6
)


@given(service=service_names, extra=extra_words)
def test_plan_is_deterministic_for_the_same_text_and_knowledge(
    service: str, extra: list[str]
) -> None:
    text = " ".join([service, "is", "down", *extra])
    first = plan(SHIPPED_SNAPSHOT, text)
    again = plan(SHIPPED_SNAPSHOT, text)
    reloaded = plan(shipped_snapshot(), text)  # freshly parsed runbooks, equal content
    assert first == again == reloaded
    assert first.plan_hash == again.plan_hash == reloaded.plan_hash
    assert first.params == {"service": service}


@given(service=service_names, old=st.integers(1, 50), new=st.integers(1, 50))
def test_plan_hash_changes_with_the_pinned_runbook_version(
    service: str, old: int, new: int
) -> None:
    text = f"{service} is down"
    before = plan(shipped_snapshot({"runbook:web-restart": old, "policy:pack": 1}), text)
    after = plan(shipped_snapshot({"runbook:web-restart": new, "policy:pack": 1}), text)
    assert (before.plan_hash == after.plan_hash) == (old == new)


@given(service=service_names, old=st.integers(1, 50), new=st.integers(1, 50))
def test_plan_hash_changes_with_the_pinned_policy_pack_version(
    service: str, old: int, new: int
) -> None:
    text = f"{service} is down"
    before = plan(shipped_snapshot({"runbook:web-restart": 1, "policy:pack": old}), text)
    after = plan(shipped_snapshot({"runbook:web-restart": 1, "policy:pack": new}), text)
    assert (before.plan_hash == after.plan_hash) == (old == new)
    assert after.knowledge_pins == {"runbook:web-restart": 1, "policy:pack": new}


@given(first=service_names, second=service_names)
def test_plan_hash_changes_with_the_params(first: str, second: str) -> None:
    runbook = SHIPPED_SNAPSHOT.runbooks["web-restart"]
    one = build(SHIPPED_SNAPSHOT, runbook, {"service": first})
    two = build(SHIPPED_SNAPSHOT, runbook, {"service": second})
    assert (one.plan_hash == two.plan_hash) == (first == second)


def test_pins_ignore_other_runbooks_versions() -> None:
    base = {"runbook:web-restart": 1, "runbook:cache-flush": 1, "policy:pack": 1}
    bumped = {**base, "runbook:cache-flush": 7}
    one = plan(shipped_snapshot(base), "api is down")
    two = plan(shipped_snapshot(bumped), "api is down")
    assert one.knowledge_pins == {"runbook:web-restart": 1, "policy:pack": 1}
    assert one.plan_hash == two.plan_hash


# --- what an acknowledgement may say: the runbook plan() would build, with its refusals -----


@given(st.text(max_size=60))
def test_the_acks_choice_is_the_runbook_plan_builds_with_the_same_refusals(text: str) -> None:
    """``chosen_runbook`` (what the ack says at once) never disagrees with ``plan``."""
    picky = make_runbook(
        "picky",
        match={
            "keywords": ["slow"],
            "patterns": [
                r"(?P<service>\S+) is slow in (?P<region>[a-z-]+)",
                r"(?P<service>\S+) is slow",
            ],
        },
        params={"service": {"pattern": r"^[a-z]{3,8}$"}},
        steps=[
            {
                "id": "probe",
                "title": "Probe {service} in {region}",
                "tool": "http.get",
                "risk": "low",
            }
        ],
    )
    known = snapshot(make_runbook("web"), keyword_runbook("page", ["paging"]), picky)
    for said in (
        text,
        f"{text} checkout is down",
        f"{text} api is slow",
        f"{text} x is slow in eu-west",
        f"{text} paging",
    ):
        assert _outcome(lambda t=said: chosen_runbook(known, t).id) == _outcome(
            lambda t=said: plan(known, t).runbook_id
        )


def _outcome(call: Any) -> tuple[str, str]:
    """What ``call`` came to: ("ok", its value), or (the refusal's code, its message)."""
    try:
        return ("ok", call())
    except OrchestrationError as exc:
        return (exc.code, str(exc))
