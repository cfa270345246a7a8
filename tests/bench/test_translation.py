"""The translation benchmark (scripts/bench_translation.py) runs on a tiny parallel_corpus."""
import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from seqkit.bench.translation import PARTS
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


def test_translation_profile_gives_every_part(tmp_path, parallel_corpus):
    out = subprocess.run([sys.executable, "scripts/bench_translation.py", "--threads", "1",
                          "--profile", "--steps", "3", "--warmup", "1", "--json",
                          str(tmp_path / "profile.json"), "--",
                          *tiny_translation(parallel_corpus)[1:]],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (times,) = json.loads((tmp_path / "profile.json").read_text()).values()
    assert set(times) == {*PARTS, "whole step"} and all(ms > 0 for ms in times.values())


def test_the_profiles_cut_step_gives_the_uncut_gradients(parallel_corpus):
    from seqkit.bench.translation import build, cut_step

    cfg, data = build(tiny_translation(parallel_corpus)[1:])
    torch.manual_seed(0)
    model = instantiate(cfg.model, **data.dims())
    task = instantiate(cfg.module, model=model)
    batch = next(iter(data.train_dataloader()))
    model.eval()  # no dropout: both passes compute the same function
    task._loss(batch)[0].backward()
    uncut = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    laps = []
    cut_step(model, batch, cfg.module.label_smoothing, lambda: laps.append(1))
    assert len(laps) == 6
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, uncut[name], msg=name)
