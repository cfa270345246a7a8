import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# property-based tests: a bounded number of inputs by default, many with
# --hypothesis-profile=slow
settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("slow", max_examples=1000, deadline=None)
settings.load_profile("default")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("SEQKIT_DATA", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
