"""Fixtures of the agent tests: the OpenAI-compatible stand-in on an ephemeral port."""

from collections.abc import AsyncIterator

import pytest

from bot.sandbox.llm import FakeModel


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    fake = FakeModel()
    await fake.start()
    yield fake
    await fake.stop()
