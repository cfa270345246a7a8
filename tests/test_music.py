"""Music: Bernoulli NLL, piano roll <-> MIDI, truncated BPTT, seeded sampling, the datasets,
and train(cfg) end to end on tiny MIDI files, then the generate command."""
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import seqkit
from seqkit import cli
from seqkit.data.cache import data_root
from seqkit.data.music import (bach_chorales, load_benchmark, midi_to_roll, pad_rolls,
                               roll_to_midi)
from seqkit.models.attention import AdditiveAttention
from seqkit.models.music import PianoRollLM
from seqkit.tasks.music import MusicTask, bernoulli_nll
from seqkit.train import train
from tests.helpers import ROOT, attention_class, layer, run_train_py, train_config


@pytest.fixture(autouse=True)
def _derived_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path_factory.getbasetemp() / "derived"))


def _roll(T=12, seed=0, density=0.08):
    rng = np.random.default_rng(seed)
    return (rng.random((T, 88)) < density).astype(np.uint8)


# -- metric ----------------------------------------------------------------------------------
def test_nll_is_the_bernoulli_log_likelihood_of_a_hand_made_roll():
    logits = torch.tensor([[[0.0, 2.0, -1.0], [1.0, -3.0, 0.5], [9.0, 9.0, 9.0]]])
    target = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third frame is padding
    p = torch.sigmoid(logits)
    direct = -sum(math.log(p[0, t, j]) if target[0, t, j] else math.log(1 - p[0, t, j])
                  for t in range(2) for j in range(3))
    nll, n = bernoulli_nll(logits, target, mask)
    assert n == 2 and nll.item() == pytest.approx(direct, rel=1e-6)


# -- MIDI ------------------------------------------------------------------------------------
def test_roll_to_midi_and_back_is_exact(tmp_path):
    roll = _roll(T=40)
    roll[5:9, 40] = 1  # a held note
    path = roll_to_midi(roll, tmp_path / "a.mid", fs=4.0)
    back = midi_to_roll(path, fs=4.0)
    np.testing.assert_array_equal(back, roll[:len(back)])
    assert not roll[len(back):].any()  # only trailing silence may be cut


def test_midi_notes_survive_and_a_second_library_reads_them(tmp_path):
    import pretty_midi
    from music21 import converter

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    notes = [(60, 0.0, 1.0), (64, 0.5, 1.5), (67, 1.0, 2.25), (48, 2.5, 2.75)]  # on a 0.25 s grid
    piano.notes += [pretty_midi.Note(90, p, a, b) for p, a, b in notes]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "in.mid"))
    roll = midi_to_roll(tmp_path / "in.mid", fs=4.0)
    assert roll.sum() == sum(round((b - a) * 4) for _, a, b in notes)
    out = roll_to_midi(roll, tmp_path / "out.mid", fs=4.0)
    back = sorted((n.pitch, round(n.start, 6), round(n.end, 6))
                  for n in pretty_midi.PrettyMIDI(str(out)).instruments[0].notes)
    assert back == sorted(notes)
    # music21 (a second MIDI library) sees the same pitches, onsets and durations in beats
    # (pretty_midi writes 120 bpm: one beat = 0.5 s)
    score = converter.parse(str(out)).stripTies()  # a note across a barline is one note
    seen = sorted((p.midi, round(float(n.offset) / 2, 6),
                   round(float(n.offset + n.quarterLength) / 2, 6))
                  for n in score.flatten().notes for p in n.pitches)
    assert seen == sorted(notes)


def test_a_bad_midi_file_is_named(tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"MThd not really")
    with pytest.raises(ValueError, match=r"bad\.mid: not a readable MIDI file"):
        midi_to_roll(tmp_path / "bad.mid")


def test_a_music21_score_becomes_a_quarter_note_roll(monkeypatch):
    from music21 import chord, corpus, note, stream

    part = stream.Stream()
    part.append(note.Note("C4", quarterLength=2))   # MIDI 60, frames 0-1
    part.append(chord.Chord(["E4", "G4"], quarterLength=1))  # 64 and 67, frame 2
    # music21's corpus holds this one score (in C major: not transposed)
    monkeypatch.setattr(corpus, "getComposer", lambda name: [Path("one-score.mxl")])
    monkeypatch.setattr(corpus, "parse", lambda path: part)
    (roll,) = bach_chorales(frames_per_quarter=1)["test"]
    assert roll.shape == (3, 88)
    assert roll[:, 60 - 21].tolist() == [1, 1, 0]
    assert roll[2, [64 - 21, 67 - 21]].tolist() == [1, 1] and roll.sum() == 4


@pytest.mark.skipif(not (data_root() / "jsb_chorales").is_dir(), reason="needs SEQKIT_DATA")
@pytest.mark.parametrize("name, sizes", [("jsb_chorales", (229, 76, 77)),
                                         ("nottingham", (694, 173, 170))])
def test_benchmarks_have_the_official_splits(name, sizes):
    splits = load_benchmark(name)
    assert tuple(len(splits[k]) for k in ("train", "val", "test")) == sizes


# -- truncated BPTT --------------------------------------------------------------------------
def _batch():
    return pad_rolls([torch.from_numpy(_roll(T, seed=T).astype(np.float32))
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


def test_a_new_model_starts_at_the_training_notes_log_odds(tmp_path):
    from seqkit.data.music import MusicData

    pieces = [_roll(T, seed=T, density=0.2) for T in (12, 9, 5)]
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        for i, roll in enumerate(pieces[:3 if split == "train" else 1]):
            np.save(tmp_path / split / f"{i}.npy", roll)
    data = MusicData(None, {s: str(tmp_path / s) for s in ("train", "val", "test")})
    data.setup()
    model = PianoRollLM(layer(hidden_size=12), embed_dim=8)
    data.init_model(model)
    frames = np.concatenate(pieces)  # add-one smoothed: a note never played is rare, not banned
    expected = torch.tensor((frames.sum(0) + 1) / (len(frames) + 2), dtype=torch.float32)
    torch.testing.assert_close(torch.sigmoid(model.out.bias), expected)
    kept = PianoRollLM(layer(hidden_size=12), embed_dim=8, note_bias=False)
    start = kept.out.bias.clone()
    data.init_model(kept)
    assert torch.equal(kept.out.bias, start)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_attention_sees_only_the_past_and_carries_it_across_chunks(kind):
    torch.manual_seed(0)
    model = PianoRollLM(layer(hidden_size=12, num_layers=2), embed_dim=8,
                        attention=attention_class(kind)).eval()
    inputs = torch.from_numpy(np.stack([_roll(), _roll(seed=1)]).astype(np.float32))
    whole, _ = model(inputs)
    changed = inputs.clone()
    changed[:, 7] = 1 - changed[:, 7]
    after, _ = model(changed)
    assert torch.equal(after[:, :7], whole[:, :7]) and not torch.allclose(after[:, 7:], whole[:, 7:])
    first, state = model(inputs[:, :5])  # the second chunk attends over the first one's outputs
    second, (_, heard) = model(inputs[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    assert heard.shape == (2, 12, 12)
    with pytest.raises(ValueError, match="dot or general"):
        PianoRollLM(layer(hidden_size=12), attention=AdditiveAttention)


# -- sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", [None, "general"])
def test_a_fixed_seed_reproduces_a_sample_exactly(attention):
    model = PianoRollLM(layer(hidden_size=12, num_layers=2), embed_dim=8,
                        attention=attention_class(attention)).eval()
    primer = torch.from_numpy(_roll(6).astype(np.float32))
    draw = [model.sample(20, primer, 2, 0.8, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert draw[0].shape == (2, 26, 88) and torch.equal(draw[0][:, :6], primer.expand(2, -1, -1))
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])


# -- end to end ------------------------------------------------------------------------------
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


def test_transposition_moves_every_note_alike_and_stays_on_the_keyboard():
    from seqkit.data.music import transpose

    roll = torch.zeros(6, 88)
    roll[0, 2], roll[3, 10], roll[5, 80] = 1, 1, 1   # room: 2 keys down, 7 up
    seen = set()
    for seed in range(60):
        moved = transpose(roll, 12, torch.Generator().manual_seed(seed))
        shift = int(moved[0].nonzero()) - 2
        assert moved.sum() == 3 and moved[3, 10 + shift] == 1 and moved[5, 80 + shift] == 1
        seen.add(shift)
    assert seen == set(range(-2, 8))
    assert torch.equal(transpose(roll, 0), roll)


def test_numpy_rolls_are_read_and_bad_ones_named(tmp_path):
    from seqkit.data.music import load_music_files

    np.save(tmp_path / "a.npy", _roll(10))
    np.savez(tmp_path / "b.npz", x=_roll(7), y=_roll(5, seed=1))
    splits = load_music_files({"train": tmp_path, "val": [tmp_path / "a.npy"],
                               "test": str(tmp_path / "b.npz")})
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    np.save(tmp_path / "c.npy", np.full((4, 88), 2))
    with pytest.raises(ValueError, match=r"c\.npy: piece 0 is not a binary \(T, 88\)"):
        load_music_files({"train": tmp_path, "val": tmp_path, "test": tmp_path})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no music files"):
        load_music_files({"train": tmp_path / "empty", "val": [], "test": []})
    with pytest.raises(FileNotFoundError, match=r"no file or folder .*missing\.mid"):
        load_music_files({"train": [tmp_path / "missing.mid"], "val": [], "test": []})


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
