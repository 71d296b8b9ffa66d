"""``opsgate check`` on secret references in the config file: an unknown name is reported at
its file and line, a Vault reference needs ``secrets.vault``; no value is ever printed."""

from pathlib import Path

import pytest

from bot.cli import main

CONFIG = """\
runbooks: ./runbooks
approvers: [U1]
adapters:
  http:
    allow_hosts: ["api.internal"]
    credentials:
      api-write:
        hosts: ["api.internal"]
        actions: [post]
        headers:
          Authorization: "Bearer ${secret:API_WRITE}"
          X-Tenant: "${secret:vault:tenants/api#id}"
secrets:
  vault:
    url: http://127.0.0.1:8200
    token: "${secret:VAULT_TOKEN}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "runbooks").mkdir()
    path = tmp_path / "opsgate.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_an_unknown_secret_in_the_config_is_named_with_file_and_line(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSGATE_SECRET_VAULT_TOKEN", "hvs.known-token-value")
    monkeypatch.delenv("OPSGATE_SECRET_API_WRITE", raising=False)
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert (
        f"{config}:11: adapters.http.credentials.api-write.headers.Authorization: "
        "${secret:API_WRITE} is not set: set OPSGATE_SECRET_API_WRITE" in out
    )
    assert "VAULT_TOKEN" not in out  # it is set
    assert "tenants/api" not in out  # Vault is configured: its paths are read at call time
    assert "hvs.known-token-value" not in out

    monkeypatch.setenv("OPSGATE_SECRET_API_WRITE", "a-write-token-123")
    assert main(["--config", str(config), "check"]) == 0
    assert "a-write-token-123" not in capsys.readouterr().out


def test_a_vault_reference_without_vault_configured_is_a_problem_at_its_line(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSGATE_SECRET_API_WRITE", "a-write-token-123")
    config.write_text(CONFIG.split("secrets:", maxsplit=1)[0], encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"{config}:12: adapters.http.credentials.api-write.headers.X-Tenant:" in out
    assert "secrets.vault must be configured" in out


def test_the_vault_login_cannot_come_from_vault(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSGATE_SECRET_API_WRITE", "a-write-token-123")
    config.write_text(
        CONFIG.replace("${secret:VAULT_TOKEN}", "${secret:vault:opsgate/login#token}"),
        encoding="utf-8",
    )
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"{config}:16: secrets.vault.token: Vault's own login cannot come from Vault" in out
