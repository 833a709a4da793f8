"""Shared test set-up: test modules import each other's fixtures from here, and every test
that builds a book counts as slow (``make test-fast`` runs ``-m "not slow"``)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("book"):
            item.add_marker(pytest.mark.slow)
