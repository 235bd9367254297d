from collections.abc import Iterator

import pytest

from yutang.journeys import engine


@pytest.fixture(autouse=True)
def _fresh_definition_cache() -> Iterator[None]:
    """Parsed versions are cached by id; a rolled-back test lets SQLite reuse ids."""
    engine._DEFINITIONS.clear()
    yield
    engine._DEFINITIONS.clear()
