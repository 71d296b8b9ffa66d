"""The runbook loader: every problem names its file and the 1-based line to change."""

from pathlib import Path

from common.yamlsrc import Problem
from orchestration.runbooks import fill, load_folder, load_runbook, placeholders

SHIPPED = Path(__file__).resolve().parents[2] / "runbooks"

VALID = """\
# A test runbook.
id: web-restart
version: 1
title: Restart an unhealthy web service
match:
  keywords: [down]
  patterns:
    - '(?P<service>[a-z][a-z0-9-]+) is down'
    - 'restart (?P<service>[a-z]+)'
steps:
  - id: probe
    title: Probe {service}
    tool: http.get
    args: {url: "http://127.0.0.1/svc/{service}/health"}
    risk: low
    expect:
      status: 200
      ok: true
  - id: restart
    title: Restart {service}
    tool: http.post
    args: {url: "http://127.0.0.1/svc/{service}/restart"}
    risk: high
"""


def write(tmp_path: Path, text: str, name: str = "runbook.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def only_problem(path: Path) -> Problem:
    runbook, problems = load_runbook(path)
    assert runbook is None
    assert len(problems) == 1, problems
    assert problems[0].source == str(path)
    return problems[0]


def test_valid_runbook_loads_without_problems(tmp_path: Path) -> None:
    runbook, problems = load_runbook(write(tmp_path, VALID))
    assert problems == []
    assert runbook is not None
    assert runbook.id == "web-restart"
    assert [s.id for s in runbook.steps] == ["probe", "restart"]
    assert runbook.match.group_names() == {"service"}


def test_shipped_runbooks_load_without_problems() -> None:
    runbooks, problems = load_folder(SHIPPED)
    assert problems == []
    assert set(runbooks) == {"web-restart", "cache-flush"}


def test_unknown_key_is_reported_on_its_own_line(tmp_path: Path) -> None:
    text = VALID.replace("    risk: high\n", "    risk: high\n    retries: 3\n")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "retries: 3")
    assert problem.where == "steps[1].retries"
    assert "unknown key" in problem.message


def test_bad_risk_value_is_reported_on_the_risk_line_with_the_value(tmp_path: Path) -> None:
    text = VALID.replace("risk: high", "risk: extreme")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "risk: extreme")
    assert problem.where == "steps[1].risk"
    assert "'extreme'" in problem.message


def test_invalid_regex_is_reported_with_the_pattern(tmp_path: Path) -> None:
    text = VALID.replace("'restart (?P<service>[a-z]+)'", "'restart (?P<service>[a-z]+'")
    problem = only_problem(write(tmp_path, text))
    assert problem.where.startswith("match.patterns")
    assert "invalid regular expression" in problem.message
    assert "restart (?P<service>[a-z]+" in problem.message


def test_invalid_param_pattern_is_reported_on_its_line(tmp_path: Path) -> None:
    text = VALID.replace("steps:\n", "params:\n  service: {pattern: '^(unclosed$'}\nsteps:\n")
    problem = only_problem(write(tmp_path, text))
    assert problem.where == "params.service.pattern"
    assert problem.line == line_of(text, "^(unclosed$")
    assert "invalid regular expression" in problem.message


def test_invalid_regex_in_a_flow_list_is_reported_on_the_patterns_line(tmp_path: Path) -> None:
    text = VALID.replace(
        "  patterns:\n    - '(?P<service>[a-z][a-z0-9-]+) is down'\n"
        "    - 'restart (?P<service>[a-z]+)'\n",
        "  patterns: ['(?P<service>[a-z]+ is down']\n",
    )
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "patterns:")


def test_invalid_regex_is_reported_on_the_bad_patterns_line(tmp_path: Path) -> None:
    text = VALID.replace("'restart (?P<service>[a-z]+)'", "'restart (?P<service>[a-z]+'")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "restart (?P<service>")
    assert problem.where == "match.patterns[1]"


def test_unknown_expect_key_names_the_key_and_the_allowed_ones(tmp_path: Path) -> None:
    text = VALID.replace("      ok: true\n", "      statuz: 200\n")
    problem = only_problem(write(tmp_path, text))
    assert problem.where == "steps[0].expect"
    assert "unknown expect key 'statuz'" in problem.message
    assert "body_contains, exit_code, json, ok, status" in problem.message
    assert problem.line in {line_of(text, "expect:"), line_of(text, "statuz")}


def test_unknown_expect_key_is_reported_on_its_own_line(tmp_path: Path) -> None:
    text = VALID.replace("      ok: true\n", "      statuz: 200\n")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "statuz")


def test_unknown_placeholder_names_the_step_and_the_placeholder(tmp_path: Path) -> None:
    text = VALID.replace("title: Restart {service}", "title: Restart {service} in {region}")
    problem = only_problem(write(tmp_path, text))
    assert "steps[1] (restart) uses {region}" in problem.message
    assert "(?P<region>...)" in problem.message


def test_unknown_placeholder_is_reported_on_the_steps_line(tmp_path: Path) -> None:
    text = VALID.replace("title: Restart {service}", "title: Restart {service} in {region}")
    problem = only_problem(write(tmp_path, text))
    assert problem.line in {line_of(text, "- id: restart"), line_of(text, "{region}")}
    assert problem.where.startswith("steps[1]")


def test_duplicate_step_id_names_the_repeated_id(tmp_path: Path) -> None:
    text = VALID.replace("- id: restart", "- id: probe")
    problem = only_problem(write(tmp_path, text))
    assert "step ids must be unique; repeated: probe" in problem.message


def test_duplicate_step_id_is_reported_on_the_repeated_steps_line(tmp_path: Path) -> None:
    text = VALID.replace("- id: restart", "- id: probe")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "- id: probe", occurrence=2)
    assert problem.where.startswith("steps[1]")


def test_yaml_syntax_error_is_reported_on_its_line(tmp_path: Path) -> None:
    text = VALID.replace("risk: high", "risk: high: very")
    problem = only_problem(write(tmp_path, text))
    assert problem.where == "(syntax)"
    assert problem.message == "invalid YAML: mapping values are not allowed here"
    assert problem.line == line_of(text, "risk: high: very")


def test_yaml_indentation_error_is_reported_on_the_offending_line(tmp_path: Path) -> None:
    text = "id: a\nversion: 1\n  title: x\n"
    problem = only_problem(write(tmp_path, text))
    assert (problem.where, problem.line) == ("(syntax)", 3)


def test_missing_required_fields_are_each_reported(tmp_path: Path) -> None:
    runbook, problems = load_runbook(write(tmp_path, "id: a\nversion: 1\n"))
    assert runbook is None
    assert {p.where for p in problems} == {"title", "match", "steps"}
    assert all(p.message == "required; add it" for p in problems)


def test_document_that_is_not_a_mapping_is_one_problem_on_line_one(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "- just\n- a list\n"))
    assert (problem.line, problem.where) == (1, "(document)")


def test_unreadable_file_is_a_problem_without_a_line(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "absent.yaml")
    assert (problem.line, problem.where) == (None, "(file)")


def test_problem_renders_as_source_line_where_message(tmp_path: Path) -> None:
    text = VALID.replace("risk: high", "risk: extreme")
    path = write(tmp_path, text)
    problem = only_problem(path)
    assert str(problem).startswith(f"{path}:{line_of(text, 'risk: extreme')}: steps[1].risk: ")


def test_duplicate_runbook_id_across_files_keeps_the_first_and_reports_the_second(
    tmp_path: Path,
) -> None:
    write(tmp_path, VALID, "a.yaml")
    second = write(tmp_path, VALID.replace("title: Restart an", "title: Other"), "b.yml")
    runbooks, problems = load_folder(tmp_path)
    assert runbooks["web-restart"].title == "Restart an unhealthy web service"
    assert [(p.source, p.where, p.message) for p in problems] == [
        (
            str(second),
            "id",
            f"runbook id 'web-restart' is used by another file ({tmp_path / 'a.yaml'}); rename one",
        )
    ]


def test_duplicate_runbook_id_is_reported_on_the_id_line(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yaml")
    _, problems = load_folder(tmp_path)
    assert [p.line for p in problems] == [line_of(VALID, "id: web-restart")]


def test_folder_loads_yaml_and_yml_and_collects_problems_from_every_file(
    tmp_path: Path,
) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID.replace("id: web-restart", "id: other"), "b.yml")
    broken = write(tmp_path, VALID.replace("risk: high", "risk: extreme"), "c.yaml")
    write(tmp_path, "not: a runbook", "notes.txt")
    runbooks, problems = load_folder(tmp_path)
    assert set(runbooks) == {"web-restart", "other"}
    assert [p.source for p in problems] == [str(broken)]


def test_missing_folder_is_a_problem(tmp_path: Path) -> None:
    runbooks, problems = load_folder(tmp_path / "nope")
    assert runbooks == {}
    assert [p.where for p in problems] == ["(folder)"]


def test_placeholders_and_fill_reach_nested_strings_only() -> None:
    value = {"url": "http://{host}/{service}", "n": 3, "tags": ["{service}", "plain"]}
    assert placeholders(value) == {"host", "service"}
    assert fill(value, {"host": "h", "service": "s"}) == {
        "url": "http://h/s",
        "n": 3,
        "tags": ["s", "plain"],
    }
