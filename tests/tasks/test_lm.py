"""The language-model task: the loss over the whole stream, truncated BPTT, seeded sampling,
and train(cfg) end to end, then the generate, gates and evaluate commands."""
import json
import math
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import seqkit
from seqkit.data.lm import Stream
from seqkit.data.vocab import Vocab
from seqkit.tasks.lm import LMTask, generate_text
from seqkit.train import train
from tests.helpers import ROOT, language_model, layer, train_config

TEXTS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _trainer(**kw):
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


# -- loss and truncated BPTT ----------------------------------------------------------------
def test_the_loss_is_the_cross_entropy_of_the_whole_stream():
    """Validation over 3-token windows (state carried) = a direct computation on each row."""
    V, ids = 7, torch.randint(0, 7, (2 * 10 + 1,))
    model = language_model(V)
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
    model = language_model()
    task = LMTask(model, lambda params: torch.optim.SGD(params, lr=0.5), sample_length=0)
    pl.seed_everything(seed)
    _trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0).fit(
        task, DataLoader(Stream(ids, rows, bptt), batch_size=None))
    return model


def _by_hand(ids, rows, cuts):
    """Plain torch: an SGD step per window, the state carried and detached."""
    model = language_model()
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


# -- sampling --------------------------------------------------------------------------------
def test_a_fixed_seed_reproduces_a_sample_exactly():
    model = language_model(vocab_size=5)
    artifacts = {"level": "char", "vocab": {"itos": ["<unk>", "a", "b", "c", "\n"],
                                            "pad": None, "unk": "<unk>"}}
    draws = [generate_text(model, artifacts, "ab", 40, 2, seed=s) for s in (3, 3, 4)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    assert all(t.startswith("ab") and len(t) == 42 for t in draws[0])
    stopped = generate_text(model, artifacts, "ab", 400, 4, stop="c", seed=1)
    assert all(t.endswith("c") and "c" not in t[2:-1] for t in stopped)


def test_a_word_prime_is_split_as_the_training_text_was():
    """"Romeo!" is two known words (ids 1, 2) under the simple tokenizer, one unknown word
    (id 0) on whitespace: what the model reads first."""
    model = language_model(vocab_size=5)
    words = {"itos": ["<unk>", "Romeo", "!", "come", "<eos>"], "pad": None, "unk": "<unk>"}
    read = []
    model.embed.register_forward_hook(lambda m, args, out: read.append(args[0][0].tolist()))
    for tokenizer, first in (("simple", [[1], [2]]), ("whitespace", [[0]])):
        read.clear()
        generate_text(model, {"level": "word", "vocab": words, "tokenizer": tokenizer},
                      "Romeo!", 3, seed=0)
        assert read[:len(first)] == first, tokenizer


@pytest.fixture(scope="module")
def char_lm():
    from seqkit.models.lm import LanguageModel

    vocab = Vocab.build([list("abc \n")], pad=None)
    model = LanguageModel(len(vocab), layer(), embed_dim=8).eval()
    return model, {"level": "char", "vocab": vocab.state_dict()}


@given(prime=st.one_of(TEXTS, st.text(alphabet="abc \n", max_size=30)),  # any, or the model's
       length=st.integers(1, 20), seed=st.integers(0, 3),
       top_k=st.integers(0, 8), top_p=st.floats(0.05, 1.0))
def test_text_generation_takes_any_prime(char_lm, prime, length, seed, top_k, top_p):
    from seqkit.tasks.lm import generate_text

    vocab = Vocab.from_state_dict(char_lm[1]["vocab"])
    try:
        (text,) = generate_text(*char_lm, prime, length, seed=seed, top_k=top_k, top_p=top_p)
    except ValueError as e:  # only a character the model never saw is refused, by name
        assert "the prime has characters the model never saw" in str(e)
        assert any(c not in vocab for c in prime)
        return
    assert text.startswith(prime) and len(text) <= len(prime) + length
    assert "<unk>" not in text[len(prime):]


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
