"""Fixtures of the web remote's tests: ``pytest_plugins = ["tests.web_fixtures"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.web_helpers import Remote, web_remote


@pytest_asyncio.fixture
async def remote() -> AsyncIterator[Remote]:
    """The web remote in front of the real controller (paced at 60x), on a free port."""
    async with web_remote() as r:
        yield r
