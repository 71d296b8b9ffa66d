"""docs/kubernetes.md stays true: its RBAC manifest grants exactly the verbs on the resources the
kubernetes tool calls (the stand-in's RBAC seed, the audited scopes, and every request an
exercise of all five actions makes), and its opsgate.yaml and Deployment examples validate."""

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from adapters.base import Grant
from adapters.kubernetes import KubernetesConfig, KubernetesTool
from adapters.kubernetes.tool import SCOPES
from adapters.secrets import SecretSource
from adapters.testing.kubernetes import KubeApiStandIn, PolicyRule, service_account_user
from common import FakeClock
from tests.adapters.conftest import grant_for
from tests.adapters.test_kubernetes import (
    MINT_TOKEN,
    MINTER,
    READ_TOKEN,
    READER,
    grant_rbac,
    kcall,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
WORKLOAD_NS = "shop"  # the namespace the manifest shows; repeated per allowed namespace

# (user, namespace, api group, resource, verb, resource names)
Atom = tuple[str, str, str, str, str, tuple[str, ...]]


def yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)


def manifest(kind: str) -> list[Any]:
    """The objects of the first yaml block that holds a ``kind``, parsed as lightkube types."""
    for block in yaml_blocks():
        if re.search(rf"^kind: {kind}$", block, re.M):
            return list(codecs.load_all_yaml(block))
    raise AssertionError(f"docs/kubernetes.md has no yaml block with kind: {kind}")


def docs_rules() -> dict[str, list[PolicyRule]]:
    """The RBAC of the manifest as the stand-in's table: RoleBindings resolved to their Roles."""
    objects = manifest("RoleBinding")
    roles = {(o.metadata.namespace, o.metadata.name): o for o in objects if isinstance(o, Role)}
    table: dict[str, list[PolicyRule]] = {}
    for binding in (o for o in objects if isinstance(o, RoleBinding)):
        namespace = binding.metadata.namespace
        assert binding.roleRef.kind == "Role", "the docs bind no ClusterRole"
        role = roles[(namespace, binding.roleRef.name)]
        for subject in binding.subjects:
            assert subject.kind == "ServiceAccount"
            user = service_account_user(subject.namespace, subject.name)
            for rule in role.rules:
                for group in rule.apiGroups:
                    table.setdefault(user, []).append(
                        PolicyRule(
                            namespace=namespace,
                            verbs=tuple(rule.verbs),
                            resources=tuple(rule.resources),
                            api_group=group,
                            resource_names=tuple(rule.resourceNames or ()),
                        )
                    )
    return table


def atoms(table: dict[str, tuple[PolicyRule, ...]] | dict[str, list[PolicyRule]]) -> set[Atom]:
    return {
        (user, r.namespace, r.api_group, resource, verb, tuple(sorted(r.resource_names)))
        for user, rules in table.items()
        for r in rules
        for resource in r.resources
        for verb in r.verbs
    }


def test_the_manifest_grants_what_the_stand_in_seed_grants() -> None:
    """The docs and the RBAC every kubernetes test runs under are the same table."""
    seeded = KubeApiStandIn()
    grant_rbac(seeded, (WORKLOAD_NS,))
    assert atoms(docs_rules()) == atoms(seeded.rules)


def test_each_write_account_is_granted_the_scope_its_tokens_are_audited_with() -> None:
    """credential_minted names a scope per action; the account's Role grants exactly it."""
    config = opsgate_kubernetes()
    table = docs_rules()
    for action, account in config.service_accounts.items():
        user = service_account_user(config.service_account_namespace, account)
        granted: dict[str, list[str]] = {}
        for rule in table[user]:
            for resource in rule.resources:
                granted.setdefault(resource, []).extend(rule.verbs)
        assert {k: sorted(v) for k, v in granted.items()} == SCOPES[action], action


def opsgate_kubernetes() -> KubernetesConfig:
    """The docs' ``adapters.kubernetes`` example, validated as opsgate validates it."""
    for block in yaml_blocks():
        data = next(yaml.safe_load_all(block), None)
        if isinstance(data, dict) and "adapters" in data:
            return KubernetesConfig.model_validate(data["adapters"]["kubernetes"])
    raise AssertionError("docs/kubernetes.md has no opsgate.yaml example")


def test_the_config_example_names_the_accounts_and_files_the_manifests_create() -> None:
    """Service accounts exist in the manifest, and every secret the config refers to is a file
    the Deployment's projected volume mounts in OPSGATE_SECRETS_DIR."""
    config = opsgate_kubernetes()
    accounts = {
        (o.metadata.namespace, o.metadata.name)
        for o in manifest("ServiceAccount")
        if o.kind == "ServiceAccount"
    }
    for account in (*config.service_accounts.values(), "reader", "minter"):
        assert (config.service_account_namespace, account) in accounts
    assert config.namespaces == [WORKLOAD_NS]
    (deployment,) = (o for o in manifest("Deployment") if isinstance(o, Deployment))
    pod = deployment.spec.template.spec
    (container,) = pod.containers
    env = {e.name: e.value for e in container.env}
    folder = env["OPSGATE_SECRETS_DIR"]
    (volume,) = (v for v in pod.volumes if v.projected is not None)
    mounts = {m.name: m.mountPath for m in container.volumeMounts}
    assert mounts[volume.name] == folder
    files = {
        item.path
        for source in volume.projected.sources
        if source.secret is not None
        for item in source.secret.items or ()
    }
    referred = {
        re.fullmatch(r"\$\{secret:(\w+)\}", ref).group(1)  # type: ignore[union-attr]
        for ref in (config.read_token, config.minting_token)
    }
    assert referred <= files
    assert config.ca_file == f"{folder}/K8S_CA"
    assert "K8S_CA" in files


@pytest.fixture
async def docs_cluster(clock: FakeClock) -> AsyncIterator[KubeApiStandIn]:
    """A stand-in API server under the docs' RBAC and nothing else."""
    async with KubeApiStandIn(clock=clock) as api:
        api.add_static_token(READ_TOKEN, READER)
        api.add_static_token(MINT_TOKEN, MINTER)
        for _ns, name in {
            (o.metadata.namespace, o.metadata.name)
            for o in manifest("ServiceAccount")
            if o.kind == "ServiceAccount"
        }:
            api.add_service_account("opsgate", name)
        for user, rules in docs_rules().items():
            api.allow(user, *rules)
        api.add_deployment(WORKLOAD_NS, "web", replicas=3)
        api.add_pod(WORKLOAD_NS, "web-1", labels={"app": "web"}, log="boom\n")
        api.add_event(WORKLOAD_NS, involved="web", reason="BackOff", message="Back-off")
        yield api


async def test_every_action_works_under_the_docs_rbac_and_uses_every_grant(
    docs_cluster: KubeApiStandIn, clock: FakeClock, signer: Any
) -> None:
    """All five actions (and the dry runs for cards) succeed with the docs' RBAC, and the set of
    (account, verb, resource) they use is exactly the set it grants: nothing missing, nothing
    spare."""
    api = docs_cluster
    config = opsgate_kubernetes().model_copy(update={"server": api.url, "ca_file": None})
    secrets = SecretSource(
        {"OPSGATE_SECRET_K8S_READ": READ_TOKEN, "OPSGATE_SECRET_K8S_MINT": MINT_TOKEN}
    )
    tool = KubernetesTool(config, clock=clock, secrets=secrets)
    ns = WORKLOAD_NS
    reads = [
        kcall("get", namespace=ns, kind="pods", name="web-1"),
        kcall("get", namespace=ns, kind="pods", labels={"app": "web"}),
        kcall("get", namespace=ns, kind="deployments", name="web"),
        kcall("get", namespace=ns, kind="deployments"),
        kcall("get", namespace=ns, kind="events", name="web"),
        kcall("logs", namespace=ns, pod="web-1"),
    ]
    for call in reads:
        assert (await tool.invoke(call, None)).ok
    writes = [
        kcall("rollout_restart", "k1", namespace=ns, name="web"),
        kcall("scale", "k2", namespace=ns, name="web", replicas=2),
        kcall("rollout_undo", "k3", namespace=ns, name="web"),
    ]
    for call in writes:
        grant: Grant = grant_for(call, signer, clock, ttl_s=300)
        assert (await tool.preview(call, grant)).ok
        assert (await tool.invoke(call, grant)).ok
    assert api.deployment(ns, "web")["spec"]["replicas"] == 2
    assert all(r.status < 400 for r in api.requests), [
        (r.verb, r.resource, r.status) for r in api.requests if r.status >= 400
    ]
    used = {(r.user, r.namespace, r.group, r.resource, r.verb) for r in api.requests}
    granted = {atom[:5] for atom in atoms(docs_rules())}
    assert used == granted
    minted_for = {r.name for r in api.requests if r.resource == "serviceaccounts/token"}
    (names,) = {atom[5] for atom in atoms(docs_rules()) if atom[3] == "serviceaccounts/token"}
    assert minted_for == set(names) == set(config.service_accounts.values())
