"""Shared test set-up: fixtures used by several modules (a module that defines a fixture of the
same name uses its own), and every test that builds a book counts as slow (``make test-fast``
runs ``-m "not slow"``). Plain helpers that several modules share are in ``support.py``."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.core.models import random_model  # noqa: E402
from helpers.core.prompts import make_contrast  # noqa: E402
from helpers.methods.prompt_sets import study_like_pairs  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("book"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def tiny():
    """A random 3-layer GPT-2 (d_model 32, 48 neurons a layer); modules with a model of their
    own define ``tiny`` themselves."""
    return random_model(n_layers=3, d_model=32, d_mlp=48, n_heads=4, seed=11)


@pytest.fixture(scope="module")
def pairs(tiny):
    """Six study-like pairs on ``tiny``."""
    return study_like_pairs(tiny, 6, seed=2)


@pytest.fixture(scope="module")
def study(tiny):
    """The study's pair on the module's ``tiny``."""
    return make_contrast(tiny)


@pytest.fixture(scope="module")
def early(tiny):
    """A pair differing at the second token, so almost every position is recomputed."""
    return make_contrast(tiny, "The apple tree and picked", "The lemon tree and picked")
