import os

import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def warm_tiny_models(tmp_path_factory):
    """The tiny model warmed up (:mod:`tests.support.warm`) to check Pass@1 0.05, and
    from there on to 0.1: two models of known order of quality, once a session."""
    from tests.support.warm import weak_and_warm

    return weak_and_warm(tmp_path_factory.mktemp("warm"), target=0.1)


@pytest.fixture(scope="session")
def warm_tiny_model(warm_tiny_models):
    """The tiny model after a short warm-up: it answers about a tenth of the problems."""
    return warm_tiny_models[1]
