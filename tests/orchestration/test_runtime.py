"""Runtime settings that combine the config and the policy pack."""

from adapters import GrantSigner, ToolRegistry
from common import FakeClock
from orchestration.config import OpsgateConfig
from orchestration.runtime import Runtime
from policies import default_pack


def runtime(config: OpsgateConfig, ttl_in_pack: int) -> Runtime:
    pack = default_pack().model_copy(update={"approval_ttl_minutes": ttl_in_pack})
    return Runtime(
        config=config,
        pack=pack,
        tools=ToolRegistry(),
        signer=GrantSigner(b"k" * 32),
        clock=FakeClock(),
        approvers=frozenset(),
    )


def test_approvals_expire_after_the_packs_ttl_unless_the_config_sets_one() -> None:
    assert runtime(OpsgateConfig(), 45).approval_ttl_minutes == 45
    assert runtime(OpsgateConfig(approval_ttl_minutes=10), 45).approval_ttl_minutes == 10


def test_cache_ttl_comes_from_the_adapter_config_or_the_composition_root() -> None:
    config = OpsgateConfig()
    rt = runtime(config, 30)
    assert rt.cache_ttl_s("http.get") == config.adapters.http.cache_ttl_s
    assert rt.cache_ttl_s("fake.read") == 0
    assert not rt.tool_caches("fake")
