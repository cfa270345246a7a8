"""The music task: Bernoulli NLL, truncated BPTT, and train(cfg) end to end on tiny MIDI files,
then the generate command; DDP with uneven batches."""
import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import seqkit
from seqkit import cli
from seqkit.data.music import midi_to_roll, pad_rolls, roll_to_midi
from seqkit.models.music import PianoRollLM
from seqkit.tasks.music import MusicTask, bernoulli_nll
from seqkit.train import train
from tests.helpers import ROOT, attention_class, layer, random_roll, run_train_py, train_config

pytestmark = pytest.mark.usefixtures("derived_cache")


def test_nll_is_the_bernoulli_log_likelihood_of_a_hand_made_roll():
    logits = torch.tensor([[[0.0, 2.0, -1.0], [1.0, -3.0, 0.5], [9.0, 9.0, 9.0]]])
    target = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third frame is padding
    p = torch.sigmoid(logits)
    direct = -sum(math.log(p[0, t, j]) if target[0, t, j] else math.log(1 - p[0, t, j])
                  for t in range(2) for j in range(3))
    nll, n = bernoulli_nll(logits, target, mask)
    assert n == 2 and nll.item() == pytest.approx(direct, rel=1e-6)


def _batch():
    return pad_rolls([torch.from_numpy(random_roll(T, seed=T).astype(np.float32))
                      for T in (12, 9, 5)])


def _fit_one_batch(tbptt, seed=0, attention=None):
    torch.manual_seed(seed)
    model = PianoRollLM(layer(hidden_size=12), embed_dim=8, dropout=0.0,
                        attention=attention_class(attention))
    task = MusicTask(model, lambda params: torch.optim.SGD(params, lr=0.5), tbptt=tbptt,
                     gradient_clip=None, num_samples=0)
    batch = _batch()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, DataLoader([batch], batch_size=None))
    return model, batch


def _manual(chunks, seed=0, attention=None):
    """Plain torch: SGD step after each chunk, the state carried and detached."""
    torch.manual_seed(seed)
    model = PianoRollLM(layer(hidden_size=12), embed_dim=8, dropout=0.0,
                        attention=attention_class(attention))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = _batch()
    rolls, lengths = batch["rolls"], batch["lengths"]
    inputs = model.shift(rolls)
    mask = torch.arange(rolls.size(1)) < lengths[:, None]
    state = None
    for a, b in chunks:
        logits, state = model(inputs[:, a:b], state)
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, rolls[:, a:b], reduction="none").sum(-1)
        loss = nll[mask[:, a:b]].sum() / mask[:, a:b].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if attention:
            (h, c), heard = state
            state = ((h.detach(), c.detach()), heard.detach())
        else:
            state = tuple(s.detach() for s in state)
    return model


def test_truncated_bptt_with_one_chunk_equals_full_bptt():
    full, _ = _fit_one_batch(tbptt=None)
    one_chunk, _ = _fit_one_batch(tbptt=1000)
    by_hand = _manual([(0, 12)])
    for a, b, c in zip(full.parameters(), one_chunk.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a, c)


@pytest.mark.parametrize("attention", [None, "general"])
def test_chunks_carry_the_state_and_cut_the_gradient(attention):
    chunked, _ = _fit_one_batch(tbptt=5, attention=attention)
    by_hand = _manual([(0, 5), (5, 10), (10, 12)], attention=attention)
    full = _manual([(0, 12)], attention=attention)
    for a, b in zip(chunked.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(chunked.parameters(),
                                                          full.parameters()))


@pytest.fixture(scope="module")
def midi_folders(tmp_path_factory):
    """Scales running up an octave and starting over: each note has one successor, so a few
    epochs learn them."""
    root = tmp_path_factory.mktemp("midi")
    for split, n in (("train", 12), ("val", 3), ("test", 3)):
        for i in range(n):
            roll = np.zeros((32, 88), np.uint8)
            for t in range(32):
                roll[t, 39 + [0, 2, 4, 5, 7, 9, 11, 12][(t + i) % 8]] = 1
            roll_to_midi(roll, root / split / f"{i}.mid", fs=4.0)
    return root


def test_music_run_folder_samples_and_generate_command(tmp_path, midi_folders):
    overrides = ["task=music", "data=midi_files",
                 *(f"data.files.{s}={midi_folders / s}" for s in ("train", "val", "test")),
                 "data.batch_size=4", "model.encoder.hidden_size=32", "model.embed_dim=16",
                 "model.dropout=0.0", "module.optimizer.lr=0.02", "module.tbptt=16",
                 "module.sample_frames=16", "trainer.max_epochs=60", "logger=csv"]
    metrics = train(train_config(tmp_path, overrides))
    # guessing the marginals (one of 8 notes) would score 8 * H(1/8) = 3.0 nats per frame
    assert metrics["test/nll"] < 1.5 and metrics["test/acc"] > 0.4, metrics
    results = json.loads((tmp_path / "results.json").read_text())
    samples = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert samples == [f"{k}_{i}.{ext}" for k in ("primed", "scratch") for i in (0, 1)
                       for ext in ("mid", "png")]
    out = subprocess.run([sys.executable, "-m", "seqkit", "generate", results["checkpoint"],
                          "--out", str(tmp_path / "gen"), "--samples", "1", "--frames", "8",
                          "--seed", "5", "--primer", str(midi_folders / "test" / "0.mid"),
                          "--wav"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [p.rsplit("/", 1)[1] for p in out.stdout.split()] == [
        "scratch_0.mid", "scratch_0.wav", "primed_0.mid", "primed_0.wav"]
    piece = seqkit.load(results["checkpoint"]).generate(  # the Python API: the same pieces
        tmp_path / "api", 1, 8, seed=5, primer=torch.from_numpy(
            midi_to_roll(midi_folders / "test" / "0.mid", fs=4.0)).float())
    assert [p.name for p in piece] == ["scratch_0.mid", "primed_0.mid"]
    assert np.array_equal(midi_to_roll(piece[1], fs=4.0),
                          midi_to_roll(tmp_path / "gen" / "primed_0.mid", fs=4.0))
    primed = midi_to_roll(tmp_path / "gen" / "primed_0.mid", fs=4.0)
    assert len(primed) >= 32 and primed.sum() > 0
    mask = os.umask(0)
    os.umask(mask)
    for name in ("primed_0.mid", "primed_0.wav"):  # readable by others, as the umask says
        assert stat.S_IMODE((tmp_path / "gen" / name).stat().st_mode) == 0o666 & ~mask
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit, match=r"seqkit generate: error: .*a-file/x: Not a directory$"):
        cli.main(["generate", results["checkpoint"], "--out", str(tmp_path / "a-file" / "x")])


@pytest.mark.slow
def test_ddp_with_uneven_batches_does_not_hang(tmp_path, midi_folders):
    """Two ranks whose batches have different lengths step as often (truncated BPTT)."""
    import shutil

    train_dir = tmp_path / "train"
    shutil.copytree(midi_folders / "train", train_dir)
    long = np.zeros((80, 88), np.uint8)
    long[np.arange(80), 40 + np.arange(80) % 5] = 1
    roll_to_midi(long, train_dir / "long.mid", fs=4.0)
    out = run_train_py("task=music", "data=midi_files", f"data.files.train={train_dir}",
                       f"data.files.val={midi_folders / 'val'}",
                       f"data.files.test={midi_folders / 'test'}",
                       "data.batch_size=2", "model.encoder.hidden_size=16", "model.embed_dim=8",
                       "module.tbptt=16", "module.num_samples=1", "trainer=ddp",
                       "trainer.max_epochs=2", "trainer.gradient_clip_val=null",
                       f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test/nll"] > 0
