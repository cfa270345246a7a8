"""Fixtures shared by the test files: tiny synthetic data, no network. Helpers that are not
fixtures are in helpers.py."""
import os

import pytest
import torch
from hypothesis import settings

from tests.helpers import SHARED_DATA

# property-based tests: a bounded number of inputs by default, many with
# --hypothesis-profile=slow
settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("slow", max_examples=1000, deadline=None)
settings.load_profile("default")

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


SENTIMENT_WORDS = {"1": ["good", "great", "fine", "superb"], "0": ["bad", "awful", "poor", "dull"]}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A separable sentiment set: the label is which word list the sentence draws from."""
    folder = tmp_path_factory.mktemp("tiny")
    gen = torch.Generator().manual_seed(0)
    files = {}
    for split, n in (("train", 64), ("val", 16), ("test", 16)):
        lines = ["text\tlabel"]
        for k in range(n):
            label = str(k % 2)
            picks = torch.randint(0, 4, (int(torch.randint(2, 7, (1,), generator=gen)),),
                                  generator=gen)
            lines.append(" ".join(["the", "film", "is"]
                                  + [SENTIMENT_WORDS[label][i] for i in picks]) + f"\t{label}")
        files[split] = folder / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n")
    return files
