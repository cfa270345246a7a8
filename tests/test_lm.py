"""Language modelling: stream layout, loss, truncated BPTT, sampling, the task end to end;
and WAV rendering of the music task's MIDI."""
import json
import math
import subprocess
import sys
import wave

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import seqkit
from seqkit.data.cache import dataset_file
from seqkit.data.lm import EOS, LMData, Stream, detokenize, read_text, tokens
from seqkit.decoding import greedy
from seqkit.decoding.sampling import top_k_filter, top_p_filter
from seqkit.models.lm import LanguageModel
from seqkit.tasks.lm import LMTask, generate_text
from seqkit.train import train
from tests.helpers import ROOT, layer, shared_file, train_config


def _model(V=7, **kw):
    torch.manual_seed(0)
    encoder = layer(kw.pop("cell", "lstm"), 10, num_layers=2, **kw.pop("options", {}))
    return LanguageModel(V, encoder, **{"embed_dim": 6, "dropout": 0.0, **kw})


def _trainer(**kw):
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


# -- data ------------------------------------------------------------------------------------
def test_rows_are_contiguous_stretches_and_batches_continue_them():
    ids = torch.arange(23)
    stream = Stream(ids, rows=2, bptt=4)            # (23 - 1) // 2 = 11 columns per row
    batches = list(stream)
    assert len(batches) == len(stream) == 3
    assert [b["inputs"].shape for b in batches] == [(2, 4), (2, 4), (2, 3)]
    inputs = torch.cat([b["inputs"] for b in batches], 1)
    targets = torch.cat([b["targets"] for b in batches], 1)
    assert inputs.tolist() == [list(range(0, 11)), list(range(11, 22))]
    assert torch.equal(targets, inputs + 1)


def test_an_offset_moves_the_cuts_and_keeps_every_column():
    stream = Stream(torch.arange(23), rows=2, bptt=4, offset=3)
    widths = [b["inputs"].size(1) for b in stream]
    assert widths == [3, 4, 4] and len(stream) == 3
    assert torch.cat([b["inputs"] for b in stream], 1)[0].tolist() == list(range(11))


def test_each_process_takes_its_own_rows():
    ids = torch.arange(41)
    rows = [torch.cat([b["inputs"] for b in Stream(ids, 2, 3, rank, 2)], 1) for rank in (0, 1)]
    assert torch.cat(rows).flatten().tolist() == list(range(40))
    with pytest.raises(ValueError, match="3 tokens are too few for 4 rows"):
        Stream(torch.arange(3), rows=4, bptt=2)


def test_tokens_and_their_inverse():
    text = "the king\n is dead\n"
    assert tokens(text, "word") == ["the", "king", EOS, "is", "dead", EOS]
    assert detokenize(tokens(text, "word"), "word") == "the king\nis dead\n"
    assert detokenize(tokens(text, "char"), "char") == text
    with pytest.raises(ValueError, match="level"):
        tokens(text, "byte")


def test_tiny_shakespeare_is_split_as_nanogpt_does():
    shared_file("tinyshakespeare", "input.txt")  # skips where the data is not here
    data = LMData()
    data.setup()
    text = read_text(dataset_file("tinyshakespeare", "input.txt"))
    n = {k: len(v) for k, v in data.ids.items()}
    assert n["train"] + n["val"] == len(text) == 1115394 and n["train"] == int(len(text) * 0.9)
    assert n["test"] == n["val"] and len(data.vocab) == 66  # 65 characters and <unk>
    assert data.vocab.decode(data.ids["val"][:20]) == list(text[n["train"]:][:20])


def test_bad_text_files_are_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbroken \xff byte\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: byte 0xff"):
        LMData(dataset=None, files=str(bad)).setup()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty.txt:1: no text"):
        LMData(dataset=None, files=str(empty)).setup()
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        LMData(dataset=None, files=str(tmp_path / "nothing.txt")).setup()


# -- loss and truncated BPTT ----------------------------------------------------------------
def test_the_loss_is_the_cross_entropy_of_the_whole_stream():
    """Validation over 3-token windows (state carried) = a direct computation on each row."""
    V, ids = 7, torch.randint(0, 7, (2 * 10 + 1,))
    model = _model(V)
    task = LMTask(model, torch.optim.SGD, artifacts={"level": "char"}, sample_length=0)
    stream = Stream(ids, rows=2, bptt=3)
    metrics = _trainer().validate(task, DataLoader(stream, batch_size=None), verbose=False)[0]
    nll, n = 0.0, 0
    with torch.no_grad():
        for row in range(2):
            x, y = stream.inputs[row].tolist(), stream.targets[row].tolist()
            logits, _ = model(torch.tensor([x]))
            for t in range(len(x)):  # -log softmax(logits_t)[y_t], written out
                z = logits[0, t].double()
                nll += float(torch.log(torch.exp(z).sum()) - z[y[t]])
                n += 1
    assert metrics["val/loss"] == pytest.approx(nll / n, rel=1e-6)
    assert metrics["val/ppl"] == pytest.approx(math.exp(nll / n), rel=1e-5)
    assert metrics["val/bpc"] == pytest.approx(nll / n / math.log(2), rel=1e-6)


def _fit(ids, rows, bptt, seed=0):
    model = _model()
    task = LMTask(model, lambda params: torch.optim.SGD(params, lr=0.5), sample_length=0)
    pl.seed_everything(seed)
    _trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0).fit(
        task, DataLoader(Stream(ids, rows, bptt), batch_size=None))
    return model


def _by_hand(ids, rows, cuts):
    """Plain torch: an SGD step per window, the state carried and detached."""
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    stream = Stream(ids, rows, bptt=10 ** 6)
    state = None
    for a, b in cuts:
        logits, state = model(stream.inputs[:, a:b], state)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                 stream.targets[:, a:b].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = tuple(s.detach() for s in state)
    return model


def test_truncated_bptt_over_the_whole_text_as_one_chunk_equals_full_bptt():
    ids = torch.randint(0, 7, (25,))
    one_chunk, by_hand = _fit(ids, rows=2, bptt=1000), _by_hand(ids, 2, [(0, 12)])
    for a, b in zip(one_chunk.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)


def test_windows_carry_the_state_and_cut_the_gradient():
    ids = torch.randint(0, 7, (25,))
    chunked = _fit(ids, rows=2, bptt=5)
    by_hand, full = _by_hand(ids, 2, [(0, 5), (5, 10), (10, 12)]), _by_hand(ids, 2, [(0, 12)])
    for a, b in zip(chunked.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(chunked.parameters(),
                                                          full.parameters()))


def test_tied_weights_share_one_matrix():
    model = _model(V=9, tie_weights=True)
    assert model.out.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in _model(V=9).parameters())


# -- sampling --------------------------------------------------------------------------------
def test_cold_sampling_is_greedy():
    model = _model().eval()
    prime = torch.tensor([1, 4, 2])
    cold = model.generate(prime, 15, temperature=1e-4, generator=torch.Generator())
    _, state = model(prime[None, :-1])
    state = tuple(s.transpose(0, 1) for s in state)
    hot = greedy(model.step, state, prime[-1:], eos=model.vocab_size, max_len=15)
    assert torch.equal(cold, hot.tokens)
    assert torch.equal(model.generate(prime, 15, temperature=0), hot.tokens)


def test_a_fixed_seed_reproduces_a_sample_exactly():
    model = _model(V=5)
    artifacts = {"level": "char", "vocab": {"itos": ["<unk>", "a", "b", "c", "\n"],
                                            "pad": None, "unk": "<unk>"}}
    draws = [generate_text(model, artifacts, "ab", 40, 2, seed=s) for s in (3, 3, 4)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    assert all(t.startswith("ab") and len(t) == 42 for t in draws[0])
    stopped = generate_text(model, artifacts, "ab", 400, 4, stop="c", seed=1)
    assert all(t.endswith("c") and "c" not in t[2:-1] for t in stopped)


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.6), (4, 0.8)])
def test_top_k_and_top_p_never_emit_a_token_outside_the_kept_set(top_k, top_p):
    model = _model(V=12).eval()
    seen, original = [], model.step

    def step(tokens, state):
        log_probs, state = original(tokens, state)
        seen.append(log_probs)
        return log_probs, state

    model.step = step
    out = model.generate(torch.tensor([3]), 30, num_samples=8, temperature=1.5,
                         generator=torch.Generator().manual_seed(0), top_k=top_k, top_p=top_p)
    model.step = original
    for t, log_probs in enumerate(seen):
        kept = top_p_filter(top_k_filter(log_probs / 1.5, top_k), top_p) > float("-inf")
        assert kept.gather(1, out[:, t:t + 1]).all()
        assert kept.sum(1).max() < 12  # the filters did remove something


# -- end to end ------------------------------------------------------------------------------
def test_lm_run_folder_and_sample_command(tmp_path):
    text = tmp_path / "abc.txt"
    text.write_text("abcabcabd\n" * 300)  # after "ab": c twice as often as d
    overrides = ["task=lm", "data=text_files", f"data.files={text}", "data.batch_size=8",
                 "data.bptt=20", "model.encoder.hidden_size=32", "model.embed_dim=16",
                 "model.dropout=0.0", "module.optimizer.lr=0.02", "module.sample_length=30",
                 "trainer.max_epochs=6", "logger=csv"]
    metrics = train(train_config(tmp_path / "run", overrides))
    # the text's entropy: only the letter after "ab" is uncertain, 1 in 10 characters
    # with H(2/3) = 0.64 nats; a uniform guess over 5 characters would score 1.61
    assert metrics["test/loss"] < 0.2, metrics
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / math.log(2), rel=1e-5)
    assert (tmp_path / "run" / "samples.txt").read_text().strip()
    ckpt = json.loads((tmp_path / "run" / "results.json").read_text())["checkpoint"]
    cmd = [sys.executable, "-m", "seqkit", "generate", ckpt, "--prime", "abca", "--length", "20",
           "--seed", "5", "--samples", "2", "--stop", "\n"]
    runs = [subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.startswith("abcab")
    lm = seqkit.load(ckpt)  # the Python API: what the CLI prints
    assert "\n".join(lm.generate("abca", 20, 2, "\n", 5)) + "\n" == runs[0].stdout
    from seqkit import cli
    cli.main(["gates", ckpt, "abcabd", "--out", str(tmp_path / "gates.png")])
    assert (tmp_path / "gates.png").stat().st_size > 5000
    with pytest.raises(SystemExit, match="no tokens in the text"):
        cli.main(["gates", ckpt, ""])
    with pytest.raises(SystemExit, match=r"the prime has characters the model never saw in "
                                         r"training: 'x', 'z'$"):
        cli.main(["generate", ckpt, "--prime", "abxz"])
    cli.main(["evaluate", ckpt])  # the test split again, from the run's config
    scores = json.loads((tmp_path / "run" / "eval-test" / "scores.json").read_text())
    assert scores["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert (tmp_path / "run" / "eval-test" / "samples.txt").is_file()


def test_a_stream_too_short_for_its_rows_is_named(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("abcdefghij" * 20 + "\n")
    data = LMData(dataset=None, files=str(text), eval_batch_size=64)
    data.setup()
    with pytest.raises(ValueError, match=r"short.txt \(val split\): 21 tokens are too few for "
                                         r"64 rows \(data.eval_batch_size"):
        data.val_dataloader()


def test_word_level_model_with_tied_weights_trains(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 100)
    overrides = ["task=lm", "data=text_files", f"data.files={text}", "data.level=word",
                 "data.batch_size=4", "data.bptt=10", "model.encoder.hidden_size=24",
                 "model.embed_dim=16", "model.tie_weights=true", "model.dropout=0.0",
                 "module.optimizer.lr=0.02", "module.sample_length=12", "trainer.max_epochs=5"]
    metrics = train(train_config(tmp_path, overrides))
    assert "test/bpc" not in metrics and metrics["test/ppl"] < 2.0, metrics
    sample = (tmp_path / "samples.txt").read_text()
    assert set(sample.split()) <= {"the", "cat", "dog", "sat", "on", "mat", "log"}


# -- audio -----------------------------------------------------------------------------------
def test_a_rendered_wav_lasts_as_long_as_its_midi_and_is_not_silent(tmp_path):
    import pretty_midi

    from seqkit.data.music import midi_to_wav, roll_to_midi

    roll = np.zeros((12, 88), bool)
    roll[0:4, 39], roll[2:8, 43], roll[9:11, 46] = True, True, True  # ends at frame 11
    midi = roll_to_midi(roll, tmp_path / "piece.mid", fs=4.0)
    path = midi_to_wav(midi, sample_rate=16000)
    assert path == tmp_path / "piece.wav"
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    end = pretty_midi.PrettyMIDI(str(midi)).get_end_time()
    assert end == pytest.approx(11 / 4.0)
    assert len(samples) / 16000 == pytest.approx(end, abs=1 / 16000)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 1000  # well above silence
    second = len(samples) // 11 * 10  # the last note sounds to the end
    assert np.abs(samples[second:]).max() > 1000
