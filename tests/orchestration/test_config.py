"""opsgate.yaml: problems with lines, ConfigError, path resolution, approvers, OPSGATE_CONFIG."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from common import Mode
from orchestration.config import OpsgateConfig, check_config, config_path, load_config
from orchestration.errors import ConfigError, OrchestrationError

EXAMPLE = Path(__file__).resolve().parents[2] / "opsgate.example.yaml"

VALID = """\
# opsgate settings
mode: gated
runbooks: ./books
policies: policies/pack.yaml
approvers: [U0123, S0789]
approver_groups:
  S0789: [U0999, U0888]
budgets:
  plan_usd: 2.5
  soft_ratio: 0.9
"""


def write(folder: Path, text: str, name: str = "opsgate.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_valid_file_loads_with_its_values_and_source(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    config, problems = check_config(path)
    assert problems == []
    assert config is not None
    assert config.mode is Mode.GATED
    assert config.budgets.plan_usd == 2.5
    assert config.budgets.plan_tokens == 2000  # default kept
    assert config.source == str(path)


def test_relative_paths_resolve_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write(tmp_path, VALID))
    assert config.runbooks == tmp_path / "books"
    assert config.policies == tmp_path / "policies" / "pack.yaml"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    books = tmp_path / "abs-books"
    config = load_config(write(tmp_path, f"runbooks: {books}\n"))
    assert config.runbooks == books
    assert config.policies is None


def test_empty_file_gives_defaults_with_runbooks_beside_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing set\n"))
    assert config.mode is Mode.SUPERVISED
    assert config.runbooks == tmp_path / "runbooks"


def test_shipped_example_config_loads_without_problems() -> None:
    config, problems = check_config(EXAMPLE)
    assert problems == []
    assert config is not None
    assert config.approver_ids() == {"U0123", "U0456", "U0999"}


@pytest.mark.parametrize(
    ("replace", "by", "where", "needle"),
    [
        ("mode: gated", "mode: yolo", "mode", "mode: yolo"),
        ("  soft_ratio: 0.9", "  soft_ratio: 2", "budgets.soft_ratio", "soft_ratio: 2"),
        ("  plan_usd: 2.5", "  plan_usd: 2.5\n  plan_eur: 3", "budgets.plan_eur", "plan_eur"),
        ("approvers: [U0123, S0789]", "approvers: [U0123, '#ops']", "approvers", "approvers"),
    ],
    ids=["bad-enum", "out-of-range", "unknown-nested-key", "bad-approver-id"],
)
def test_each_invalid_setting_is_one_problem_on_its_line(
    tmp_path: Path, replace: str, by: str, where: str, needle: str
) -> None:
    text = VALID.replace(replace, by)
    path = write(tmp_path, text)
    config, problems = check_config(path)
    assert config is None
    assert [(p.source, p.where, p.line) for p in problems] == [
        (str(path), where, line_of(text, needle))
    ]


def test_unknown_top_level_key_says_to_remove_it(tmp_path: Path) -> None:
    text = VALID + "approvel_ttl_minutes: 5\n"
    _, problems = check_config(write(tmp_path, text))
    assert [(p.where, p.line, p.message) for p in problems] == [
        (
            "approvel_ttl_minutes",
            line_of(text, "approvel"),
            "unknown key; remove it or check its spelling",
        )
    ]


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    text = VALID.replace("mode: gated", "mode: yolo") + "approval_ttl_minutes: 0\n"
    _, problems = check_config(write(tmp_path, text))
    assert {(p.where, p.line) for p in problems} == {
        ("mode", line_of(text, "mode: yolo")),
        ("approval_ttl_minutes", line_of(text, "approval_ttl_minutes")),
    }


def test_yaml_syntax_error_is_reported_on_its_line(tmp_path: Path) -> None:
    text = VALID.replace("mode: gated", "mode: gated: now")
    config, problems = check_config(write(tmp_path, text))
    assert config is None
    assert [(p.where, p.line) for p in problems] == [("(syntax)", line_of(text, "gated: now"))]


def test_document_that_is_not_a_mapping_is_a_problem(tmp_path: Path) -> None:
    _, problems = check_config(write(tmp_path, "- mode\n"))
    assert [(p.where, p.line) for p in problems] == [("(document)", 1)]


def test_missing_file_is_a_problem_without_a_line(tmp_path: Path) -> None:
    config, problems = check_config(tmp_path / "absent.yaml")
    assert config is None
    assert [(p.where, p.line) for p in problems] == [("(file)", None)]
    assert problems[0].message.startswith("cannot read")


def test_load_config_raises_config_error_naming_file_line_and_setting(tmp_path: Path) -> None:
    text = VALID.replace("mode: gated", "mode: yolo")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert isinstance(error, OrchestrationError)
    assert error.code == "config_invalid"
    assert (error.path, error.line) == (str(path), line_of(text, "mode: yolo"))
    assert error.message.startswith(f"{path}:{error.line}: mode: ")


def test_approver_ids_expand_groups_and_keep_plain_users() -> None:
    config = OpsgateConfig(
        approvers=["U1", "S1", "S2"], approver_groups={"S1": ["U2", "U3"], "S2": ["U3", "U1"]}
    )
    assert config.approver_ids() == frozenset({"U1", "U2", "U3"})


def test_group_defined_but_not_listed_as_approver_grants_nothing() -> None:
    config = OpsgateConfig(approvers=["U1"], approver_groups={"S1": ["U2"]})
    assert config.approver_ids() == frozenset({"U1"})


@pytest.mark.parametrize("bad", ["", "#ops", "1U23", "U-123", "@alice"])
def test_approver_that_is_not_a_slack_id_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not a Slack user or user-group id"):
        OpsgateConfig(approvers=[bad])


def test_config_path_honours_opsgate_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = write(tmp_path, "mode: shadow\n", "custom.yaml")
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "mode: gated\n")  # ./opsgate.yaml loses to the variable
    monkeypatch.setenv("OPSGATE_CONFIG", str(named))
    assert config_path() == named
    assert load_config().mode is Mode.SHADOW


def test_config_path_falls_back_to_local_opsgate_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "mode: gated\n")
    assert config_path() == Path("opsgate.yaml")
    assert load_config().mode is Mode.GATED


def test_without_any_file_the_built_in_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path() is None
    config, problems = check_config()
    assert problems == []
    assert config == OpsgateConfig()
    assert config is not None
    assert config.source == "(built-in defaults)"
