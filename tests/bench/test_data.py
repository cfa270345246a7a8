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


@pytest.mark.slow
@needs_shared_data
def test_forked_ddp_processes_share_what_was_loaded_before_the_fork(tmp_path):
    """Two DDP processes forked after the data and the model were built (trainer=ddp_fork)
    share the libraries' and the build's pages: their job's summed PSS, the parent's included,
    is below that of two processes started afresh, each with its own copy."""
    row = run("pairs", 3000, tmp_path, steps=3, ddp=True)
    assert len(row["ddp_fresh_pss_each_mb"]) == 2 and len(row["ddp_fork_pss_each_mb"]) == 3
    assert row["ddp_fork_pss_mb"] < 0.9 * row["ddp_fresh_pss_mb"]
    assert row["ddp_fresh_pss_mb"] > 1.5 * row["pss_mb"]  # fresh processes share little
