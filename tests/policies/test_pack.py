"""Loading and checking policy packs: the schema, and errors with file and line."""

import textwrap
from pathlib import Path

import pytest

from common import Risk
from policies import PackError, check_pack, check_pack_text, default_pack, load_pack, load_pack_text

VALID = textwrap.dedent(
    """\
    version: 1
    approval:
      low: {quorum: 0}
      medium: {quorum: 1}
      high: {quorum: 2, exclude_requester: true}
      critical: {deny: true}
    deny:
      - id: no-drop
        tool: "sql.*"
        args_pattern: '(?i)drop\\s+table'
        reason: "No DROP TABLE."
        code: no_drop
    escalate:
      - id: prod
        args_pattern: prod
        to: high
        reason: "Production."
    """
)


def _one_error(text: str) -> PackError:
    with pytest.raises(PackError) as caught:
        load_pack_text(text, source="policies.yaml")
    return caught.value


def test_default_pack_loads_and_follows_the_design() -> None:
    """The shipped pack: low auto, medium one, high two without the requester, critical denied."""
    pack = default_pack()
    assert pack.approval.for_risk(Risk.LOW).quorum == 0
    assert pack.approval.for_risk(Risk.MEDIUM).quorum == 1
    high = pack.approval.for_risk(Risk.HIGH)
    assert (high.quorum, high.exclude_requester) == (2, True)
    assert pack.approval.for_risk(Risk.CRITICAL).deny
    assert pack.approval_ttl_minutes == 30
    assert pack.max_denials_per_plan == 3
    assert default_pack() is pack


def test_load_pack_from_a_path(tmp_path: Path) -> None:
    """A valid file loads; globs given as one string become a one-item tuple; regexes compile."""
    path = tmp_path / "policies.yaml"
    path.write_text(VALID)
    pack = load_pack(path)
    assert pack.deny[0].tool == ("sql.*",)
    assert pack.deny[0].args_pattern is not None
    assert pack.deny[0].args_pattern.search("DROP  TABLE x")
    assert pack.escalate[0].tool == ("*",)
    assert check_pack(path) == []


def test_omitted_sections_take_the_design_defaults() -> None:
    """``version: 1`` alone is the design's approval table with no rules."""
    pack = load_pack_text("version: 1\n")
    assert pack.approval == default_pack().approval
    assert (pack.deny, pack.escalate) == ((), ())


def test_unknown_key_is_reported_with_its_line_and_the_allowed_keys() -> None:
    """A typo such as ``arg_pattern`` would silently disable a rule, so it is an error."""
    error = _one_error(VALID.replace("args_pattern: '(?i)", "arg_pattern: '(?i)"))
    assert error.line == 10
    assert error.location == "deny[0].arg_pattern"
    assert "unknown key" in error.message
    assert "args_pattern" in error.message
    assert str(error).startswith("policies.yaml:10: deny[0].arg_pattern: unknown key")


def test_bad_regex_is_reported_with_its_line() -> None:
    """Regexes compile at load time; an invalid one names the line and asks for a fix."""
    error = _one_error(VALID.replace("args_pattern: prod", "args_pattern: '(prod'"))
    assert error.line == 15
    assert error.location == "escalate[0].args_pattern"
    assert "invalid regex" in error.message
    assert error.message.endswith("- fix the pattern")


def test_wrong_type_is_reported_with_its_line() -> None:
    """A quorum that is not a number names the line and the value found."""
    error = _one_error(VALID.replace("medium: {quorum: 1}", "medium: {quorum: two}"))
    assert error.line == 4
    assert error.location == "approval.medium.quorum"
    assert "'two'" in error.message


def test_unknown_risk_level_is_an_error() -> None:
    """``to`` must be a risk level."""
    error = _one_error(VALID.replace("to: high", "to: extreme"))
    assert (error.line, error.location) == (16, "escalate[0].to")


def test_missing_key_points_at_its_parent() -> None:
    """A rule without ``reason`` is reported on the rule's line."""
    error = _one_error(VALID.replace('    reason: "Production."\n', ""))
    assert (error.line, error.location) == (14, "escalate[0].reason")
    assert "add it" in error.message


def test_check_pack_returns_every_problem_in_line_order(tmp_path: Path) -> None:
    """``opsgate check`` shows all problems at once, not one per run."""
    text = (
        VALID.replace("version: 1", "version: 2")
        .replace("args_pattern: prod", "args_pattern: '[prod'")
        .replace("code: no_drop", "code: no_drop\n    colour: red")
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    problems = check_pack(path)
    assert [(p.line, p.location) for p in problems] == [
        (1, "version"),
        (13, "deny[0].colour"),
        (16, "escalate[0].args_pattern"),
    ]
    assert all(p.path == str(path) for p in problems)


def test_yaml_syntax_error_has_a_line() -> None:
    """Broken YAML is a PackError, not a yaml exception."""
    error = _one_error("version: 1\ndeny: [\n")
    assert error.line is not None
    assert "invalid YAML" in error.message


def test_duplicate_yaml_key_is_an_error() -> None:
    """YAML would keep the last of two equal keys silently; a pack refuses."""
    error = _one_error("version: 1\nmax_denials_per_plan: 3\nmax_denials_per_plan: 9\n")
    assert error.line == 3
    assert "duplicate key" in error.message


def test_pack_must_be_a_mapping() -> None:
    """An empty file or a list is not a pack."""
    assert "version: 1" in _one_error("").message
    assert _one_error("- 1\n").line == 1


def test_duplicate_rule_ids_are_an_error() -> None:
    """Decisions name the rule that decided, so ids are unique across deny and escalate."""
    error = _one_error(VALID.replace("id: prod", "id: no-drop"))
    assert "used twice" in error.message


def test_approval_table_must_not_weaken_with_risk() -> None:
    """High risk needing fewer approvals than medium is almost surely a mistake."""
    error = _one_error("version: 1\napproval:\n  medium: {quorum: 3}\n")
    assert error.location == "approval"
    assert error.line == 2
    assert "needs less" in error.message


def test_critical_must_be_denied() -> None:
    """No pack can let critical steps run."""
    error = _one_error("version: 1\napproval:\n  critical: {quorum: 3}\n")
    assert "critical" in error.message


def test_missing_file_is_a_pack_error(tmp_path: Path) -> None:
    """An unreadable path is reported like any other pack problem."""
    problems = check_pack(tmp_path / "absent.yaml")
    assert len(problems) == 1
    assert problems[0].line is None
    assert "cannot read" in problems[0].message


def test_check_pack_text_of_a_valid_pack_is_empty() -> None:
    """No problems, no errors."""
    assert check_pack_text(VALID) == []
