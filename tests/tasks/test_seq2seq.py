"""The seq2seq task: its losses (label smoothing, coverage), bf16 training, rows gathered
across processes, and train(cfg) end to end on tiny synthetic data, then predict: translation
on a parallel corpus, summarization on a copy task (with its ROUGE baselines)."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqkit
from seqkit import cli
from seqkit.predict import load, transduce
from seqkit.tasks.seq2seq import (coverage_loss, gather_rows, label_smoothed_nll,
                                  smoothed_cross_entropy)
from seqkit.train import train
from tests.helpers import ROOT, run_train_py, seq2seq, tiny_translation, train_config

pytestmark = pytest.mark.usefixtures("derived_cache")


# -- losses ------------------------------------------------------------------------------------
def test_label_smoothing_counts_only_real_tokens():
    log_probs = torch.randn(2, 3, 5).log_softmax(-1)
    target = torch.tensor([[1, 2, 0], [3, 0, 0]])
    loss, nll, n = label_smoothed_nll(log_probs, target, pad_index=0, smoothing=0.0)
    gold = -(log_probs[0, 0, 1] + log_probs[0, 1, 2] + log_probs[1, 0, 3]) / 3
    assert n == 3 and torch.allclose(loss, gold) and torch.allclose(nll, gold)
    smoothed, _, _ = label_smoothed_nll(log_probs, target, pad_index=0, smoothing=0.1)
    uniform = -(log_probs[0, 0].mean() + log_probs[0, 1].mean() + log_probs[1, 0].mean()) / 3
    assert torch.allclose(smoothed, 0.9 * gold + 0.1 * uniform)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_smoothed_cross_entropy_equals_label_smoothed_nll(smoothing):
    logits = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 11, (7,))
    ours = smoothed_cross_entropy(logits, target, smoothing)
    (grad,) = torch.autograd.grad(3.0 * ours[0], logits)
    reference = label_smoothed_nll(logits.log_softmax(-1)[None], target[None], -1, smoothing)
    (expected,) = torch.autograd.grad(3.0 * reference[0], logits)
    torch.testing.assert_close(ours[:2], reference[:2])
    assert ours[2] == reference[2] == 7
    torch.testing.assert_close(grad, expected)
    # bfloat16 logits (mixed precision): the loss is computed in float32, the gradient is bf16
    half = logits.detach().bfloat16().requires_grad_()
    loss = smoothed_cross_entropy(half, target, smoothing)[0]
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.double(), reference[0].detach(), atol=0.05, rtol=0.02)


def test_coverage_loss_on_a_hand_checked_example():
    # step 1: coverage 0 -> 0; step 2: coverage (.5, .5) -> min(.9, .5) + min(.1, .5) = .6;
    # step 3: coverage (1.4, .6) -> min(.2, 1.4) + min(.8, .6) = .8; the padded step 4 is out
    weights = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]]])
    mask = torch.tensor([[True, True, True, False]])
    assert coverage_loss(weights, mask).item() * 3 == pytest.approx(0.0 + 0.6 + 0.8)


# -- end to end --------------------------------------------------------------------------------
def test_bf16_mixed_training_keeps_the_fused_optimizer_and_clips(tmp_path, parallel_corpus,
                                                                monkeypatch):
    made, norms = [], []

    class Adam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm, *a, **k: norms.append(max_norm) or
                        clip(params, max_norm, *a, **k))
    train(train_config(tmp_path, tiny_translation(
        parallel_corpus, "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
        "trainer.gradient_clip_val=0.5")))
    assert made and made[0].get("fused") is True
    assert norms and set(norms) == {0.5}


def test_translation_run_folder_bleu_and_predict(tmp_path, parallel_corpus, monkeypatch):
    metrics = train(train_config(tmp_path, tiny_translation(parallel_corpus)))
    assert metrics["test/bleu"] > 60, metrics
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"test/bleu", "test/ppl", "test/sents_per_s", "checkpoint"} <= results.keys()
    hyps = (tmp_path / "outputs.test.txt").read_text().splitlines()
    assert len(hyps) == 24 and sorted((tmp_path / "plots").glob("attention_*.png"))
    assert "tok:13a" in json.loads((tmp_path / "scores.test.json").read_text())["signature"]
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(parallel_corpus / "test.ref"),
                          "-i", str(tmp_path / "outputs.test.txt"), "-b", "-w", "2"],
                         capture_output=True, text=True, timeout=60)
    assert float(cli.stdout) == pytest.approx(results["test/bleu"], abs=0.006)  # -w 2: two decimals

    model, artifacts = load(results["checkpoint"])
    sources = ["eins zwei haus", "", "rot katze"]
    assert transduce(model, artifacts, sources, beam_size=2) == ["one two house", "", "red cat"]
    # sorted by length, one at a time, back in order
    assert transduce(model, artifacts, sources, beam_size=2, batch_size=1, stop="top") == [
        "one two house", "", "red cat"]
    # decoded at the precision it trained at (stored in the checkpoint), or the one asked for
    assert artifacts["precision"] == "32-true"
    dtypes = []
    model.generator.out.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    transduce(model, artifacts, sources[:1], beam_size=2)
    assert set(dtypes) == {torch.float32}
    dtypes.clear()
    hyps = transduce(model, {**artifacts, "precision": "bf16-mixed"}, sources, beam_size=2)
    assert set(dtypes) == {torch.bfloat16} and hyps == ["one two house", "", "red cat"]
    out = subprocess.run([sys.executable, "-m", "seqkit", "predict", results["checkpoint"],
                          "--file", "-", "--beam", "1", "--batch-size", "2"],
                         input="blau hund\n\ngroß\n",
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["blue dog", "", "big"]
    translator = seqkit.load(results["checkpoint"])  # what the CLI prints, in Python
    assert translator.predict(["blau hund", "", "groß"], beam_size=1, batch_size=2) == [
        "blue dog", "", "big"]


def _gather(rank: int, port: int, folder: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    indices = [0, 2, 4] if rank == 0 else [1, 3, 0]  # rank 1 repeats 0, as the sampler pads
    rows, sums = gather_rows([(i, f"hyp {i}") for i in indices], [1.5, 10 + rank, 2.0 + rank])
    (folder / f"{rank}.json").write_text(json.dumps([sorted(rows), sums]))
    dist.destroy_process_group()


def test_rows_are_gathered_across_processes_once_each(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_gather, args=(port, tmp_path), nprocs=2)
    expected = [[[i, f"hyp {i}"] for i in range(5)], [3.0, 21, 3.0]]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == expected
    assert gather_rows([(0, "a")], [1.0, 2, 3.0]) == ([(0, "a")], [1.0, 2, 3.0])


@pytest.mark.slow
def test_ddp_bleu_covers_the_whole_test_set(tmp_path, parallel_corpus):
    out = run_train_py(*tiny_translation(parallel_corpus, "trainer=ddp", "callbacks=none"),
                       f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    hyps = (tmp_path / "outputs.test.txt").read_text().splitlines()
    assert len(hyps) == 24  # not the half one rank decoded
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(parallel_corpus / "test.ref"),
                          "-i", str(tmp_path / "outputs.test.txt"), "-b", "-w", "2"],
                         capture_output=True, text=True, timeout=60)
    assert float(cli.stdout) == pytest.approx(results["test/bleu"], abs=0.006)


COMMON = "propose a method for the task and show results on data".split()


def _document(rng: random.Random) -> dict:
    """The summary is the source's first sentence's name plus a fixed phrase: names are
    unique made-up words, so only copying can produce them."""
    name = "".join(rng.choices("bcdfghjklmnpqrstvwxz", k=7))
    filler = " ".join(rng.choices(COMMON, k=rng.randint(4, 9)))
    return {"source": f"{name} is new. We {filler}.", "summary": f"{name} is new"}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("summaries"), random.Random(0)
    for split, n in (("train", 256), ("val", 16), ("test", 16)):
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(_document(rng)) + "\n" for _ in range(n)))
    return folder


def test_summarization_run_folder_rouge_baselines_and_predict(tmp_path, documents):
    overrides = ["task=summarization", "data=summarization_files", "data.min_freq=3",
                 *(f"data.files.{s}={documents / (s + '.jsonl')}" for s in ("train", "val", "test")),
                 "data.batch_size=32", "model.embed_dim=32", "model.encoder.hidden_size=16",
                 "model.decoder.rnn.hidden_size=32",
                 "model.dropout=0.0", "module.optimizer.lr=0.01", "module.decoding.min_len=0",
                 "module.num_heatmaps=2", "trainer.max_epochs=10", "logger=csv"]
    metrics = train(train_config(tmp_path, overrides))
    assert metrics["test/rouge1"] > 90, metrics
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test/lead1_rouge1"] > 0 and results["test/oracle_rouge1"] == 100.0
    # test/rouge1 is rouge-score's, unstemmed, on the written summaries, best reference each
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1"], use_stemmer=False)
    written = (tmp_path / "outputs.test.txt").read_text().splitlines()
    refs = [[json.loads(line)["summary"]] for line in open(documents / "test.jsonl")]
    assert len(written) == len(refs) == 16
    assert results["test/rouge1"] == pytest.approx(100 * sum(
        max(scorer.score(r, w)["rouge1"].fmeasure for r in rs)
        for w, rs in zip(written, refs)) / 16, abs=1e-4)
    assert json.loads((tmp_path / "scores.test.json").read_text())["rouge_stemmer"] is False
    assert len(sorted((tmp_path / "plots").glob("attention_*.png"))) == 2

    rng = random.Random(1)
    doc = _document(rng)
    model, artifacts = load(results["checkpoint"])
    assert artifacts["task"] == "summarization"
    assert transduce(model, artifacts, [doc["source"]], beam_size=2) == [doc["summary"]]
    out = subprocess.run([sys.executable, "-m", "seqkit", "predict", results["checkpoint"],
                          "--file", "-", "--beam", "1"], input=doc["source"] + "\n",
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [doc["summary"]]
    assert seqkit.load(results["checkpoint"]).predict([doc["source"]], beam_size=1) == \
        out.stdout.splitlines()  # the Python API gives what the CLI prints
    # seqkit evaluate feeds the batches itself (no data module): the copying model scores
    cli.main(["evaluate", results["checkpoint"], "--split", "test", "--out",
              str(tmp_path / "ev")])
    scores = json.loads((tmp_path / "ev" / "scores.json").read_text())
    assert scores["test/rouge1"] == pytest.approx(results["test/rouge1"], abs=1e-4)


def test_copy_needs_one_vocabulary_and_no_label_smoothing():
    from seqkit.tasks.seq2seq import Seq2SeqTask

    with pytest.raises(ValueError, match="share_embeddings"):
        seq2seq(12, 12, attention="additive", copy=True)
    model = seq2seq(12, 12, attention="additive", share_embeddings=True, copy=True)
    with pytest.raises(ValueError, match="label_smoothing=0"):
        Seq2SeqTask(model, torch.optim.Adam, label_smoothing=0.1)
