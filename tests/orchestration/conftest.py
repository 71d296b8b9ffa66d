"""Fixtures of the control-plane tests: a FakeTool and control planes closed after the test."""

from collections.abc import AsyncIterator

import pytest

from adapters.testing import FakeTool
from orchestration.control import ControlPlane


@pytest.fixture
def fake() -> FakeTool:
    return FakeTool()


@pytest.fixture
async def planes() -> AsyncIterator[list[ControlPlane]]:
    made: list[ControlPlane] = []
    yield made
    for plane in made:
        await plane.close()
