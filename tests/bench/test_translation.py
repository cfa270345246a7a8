"""The translation benchmark (scripts/bench_translation.py) runs on a tiny parallel_corpus."""
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, tiny_translation

pytestmark = pytest.mark.usefixtures("derived_cache")


def test_translation_benchmark_script_runs(tmp_path, parallel_corpus):
    out = subprocess.run([sys.executable, "scripts/bench_translation.py", "--threads", "1",
                          "--steps", "3", "--warmup", "1", "--sentences", "8", "--json",
                          str(tmp_path / "bench.json"), "--",
                          *tiny_translation(parallel_corpus)[1:]],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads((tmp_path / "bench.json").read_text())
    assert row["threads"] == 1 and row["train_tokens_per_s"] > 0 and row["beam5_sents_per_s"] > 0
