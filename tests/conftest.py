import os

import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def warm_tiny_model(tmp_path_factory):
    """The tiny model after a short warm-up (:mod:`tests.support.warm`), once a session."""
    from tests.support.warm import short_warm_up

    return short_warm_up(tmp_path_factory.mktemp("warm-tiny"))
