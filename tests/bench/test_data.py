"""The data benchmark (seqkit bench data) on a small corpus made from Multi30k."""
import pytest

from seqkit.bench.data import corpus, run, text
from seqkit.data.parallel import read_aligned
from tests.helpers import needs_shared_data


@needs_shared_data
def test_a_small_corpus_gives_a_row(tmp_path):
    files = corpus(tmp_path, 30_500)  # past Multi30k's 29,000: shuffled copies follow
    pairs = read_aligned(*files)
    assert len(pairs) == 30_500 and pairs[29_000] != pairs[0]
    assert sorted(pairs[29_000][0].split()) == sorted(pairs[0][0].split())
    path = text(tmp_path, 2)
    assert 2e6 <= path.stat().st_size < 2e6 + 1.2e6 and path.read_text().startswith("First")


@pytest.mark.slow
@needs_shared_data
def test_the_benchmark_prepares_starts_and_trains(tmp_path):
    row = run("pairs", 3000, tmp_path, steps=3, ddp=False)
    assert row["size"] == 3000 and row["tokens_per_s"] > 0
    assert 0 < row["start_s"] < row["prepare_s"] + 60 and 100 < row["peak_rss_mb"] < 4000
