"""``llm:``: absent means runbooks only; ``OPSGATE_LLM_*`` override it; the key is a reference."""

import pytest
from pydantic import ValidationError

from orchestration.config import LlmConfig, OpsgateConfig


def test_without_llm_or_its_environment_there_are_no_agents() -> None:
    assert OpsgateConfig().llm_settings({}) is None
    assert OpsgateConfig().llm_settings({"OPSGATE_LLM_MODEL": "m"}) is None  # a model alone


def test_the_environment_overrides_the_file_and_a_base_url_alone_enables_the_agents() -> None:
    env = {"OPSGATE_LLM_BASE_URL": "http://127.0.0.1:1/v1", "OPSGATE_LLM_API_KEY": "sk-env"}
    alone = OpsgateConfig().llm_settings(env)
    assert alone is not None
    assert (alone.base_url, alone.api_key, alone.model) == (
        "http://127.0.0.1:1/v1",
        "sk-env",
        LlmConfig().model,
    )
    filed = OpsgateConfig.model_validate(
        {"llm": {"base_url": "https://api.example/v1", "model": "m1", "max_tokens_per_call": 64}}
    )
    merged = filed.llm_settings({"OPSGATE_LLM_MODEL": "m2"})
    assert merged is not None
    assert (merged.base_url, merged.model, merged.max_tokens_per_call) == (
        "https://api.example/v1",
        "m2",
        64,
    )


def test_a_key_written_into_the_file_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"secret reference like \$\{secret:OPENAI_API_KEY\}"):
        OpsgateConfig.model_validate({"llm": {"api_key": "sk-live-123"}})
    ok = OpsgateConfig.model_validate({"llm": {"api_key": "${secret:OPENAI_API_KEY}"}})
    assert ok.llm is not None
    assert ok.llm.api_key == "${secret:OPENAI_API_KEY}"
    with pytest.raises(ValidationError, match="max_tokens_per_call"):
        OpsgateConfig.model_validate({"llm": {"max_tokens_per_call": 0}})
