"""docs/vault.md stays true: its opsgate.yaml example validates as ``secrets.vault``, and its
policy grants the paths opsgate's Vault calls use (KV v2 reads under ``<mount>/data/``, the
creds path its lease example reads, and lease renew and revoke), with no more capabilities."""

import re
from pathlib import Path

import yaml

from adapters.secrets import parse_vault_ref
from adapters.vault import VaultConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "vault.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC, re.M | re.S)


def config() -> VaultConfig:
    for block in blocks("yaml"):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "secrets" in data:
            return VaultConfig.model_validate(data["secrets"]["vault"])
    raise AssertionError("docs/vault.md has no secrets.vault example")


def policy() -> dict[str, set[str]]:
    (hcl,) = blocks("hcl")
    found = re.findall(r'path "([^"]+)" \{\s*capabilities = \[([^\]]*)\]\s*\}', hcl)
    return {path: set(re.findall(r'"(\w+)"', caps)) for path, caps in found}


def test_the_config_example_validates() -> None:
    vault = config()
    assert (vault.auth, vault.role, vault.mount) == ("kubernetes", "opsgate", "secret")


def test_the_policy_covers_every_reference_the_doc_shows_and_nothing_more() -> None:
    granted = policy()
    mount = config().mount
    found = re.findall(r"\$\{secret:(vault(?:-lease)?:[^}]+)\}", DOC)
    refs = {ref for ref in found if "PATH" not in ref}  # the table's placeholders aside
    assert refs, "the doc shows references"
    for ref in refs:
        parsed = parse_vault_ref(ref)
        assert parsed is not None, ref
        lease = ref.startswith("vault-lease:")
        path = ref.split(":", 1)[1].split("#", 1)[0]
        wanted = path if lease else f"{mount}/data/{path}"
        assert any(
            re.fullmatch(re.escape(p).replace(r"\*", ".*"), wanted) and "read" in caps
            for p, caps in granted.items()
        ), ref
    assert granted["sys/leases/renew"] == {"update"}
    assert granted["sys/leases/revoke"] == {"update"}
    assert all(caps <= {"read", "update"} for caps in granted.values())
    assert {p for p, caps in granted.items() if "update" in caps} == {
        "sys/leases/renew",
        "sys/leases/revoke",
    }
