"""Translation: readers, subwords, attention, the seq2seq model's decoding consistency, an
overfit batch, and train(cfg) end to end on a tiny synthetic corpus, then predict."""
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqkit
from seqkit.data.cache import data_root
from seqkit.data.parallel import (TranslationData, load_multi30k, pad_sources, pad_targets,
                                  read_aligned, read_tsv_pairs, read_user_pairs)
from seqkit.data.subword import Subwords
from seqkit.models.attention import AdditiveAttention, DotAttention, GeneralAttention, attend
from seqkit.predict import load, transduce
from seqkit.tasks.seq2seq import (gather_rows, generate, label_smoothed_nll,
                                  smoothed_cross_entropy)
from seqkit.train import train
from tests.helpers import ROOT, run_train_py, seq2seq, tiny_translation, train_config

WORDS = {"eins": "one", "zwei": "two", "drei": "three", "vier": "four", "rot": "red",
         "blau": "blue", "haus": "house", "hund": "dog", "katze": "cat", "groß": "big"}


@pytest.fixture(autouse=True)
def _derived_cache(tmp_path_factory, monkeypatch):
    """Sentencepiece models are cached in SEQKIT_CACHE: keep the tests' out of ~/.cache."""
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path_factory.getbasetemp() / "derived"))


def _sentence(rng: random.Random) -> tuple[str, str]:
    """A word-for-word 'translation': the same order, each word looked up in WORDS (no word
    twice, so that attention can align by content and learn in a few hundred steps)."""
    words = rng.sample(sorted(WORDS), k=rng.randint(2, 5))
    return " ".join(words), " ".join(WORDS[w] for w in words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train: two aligned files; val: TSV with a header; test: JSONL (+ its references)."""
    folder, rng = tmp_path_factory.mktemp("parallel"), random.Random(0)
    pairs = {split: [_sentence(rng) for _ in range(n)]
             for split, n in (("train", 320), ("val", 24), ("test", 24))}
    (folder / "train.de").write_text("".join(s + "\n" for s, _ in pairs["train"]))
    (folder / "train.en").write_text("".join(t + "\n" for _, t in pairs["train"]))
    (folder / "val.tsv").write_text("tgt\tsrc\n" + "".join(f"{t}\t{s}\n" for s, t in pairs["val"]))
    (folder / "test.jsonl").write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n"
                                               for s, t in pairs["test"]))
    (folder / "test.ref").write_text("".join(t + "\n" for _, t in pairs["test"]))
    return folder


# -- readers ---------------------------------------------------------------------------------
ALIGNED = "eins\nzwei\ndrei\n"
BAD_INPUT = [  # (files of one split, what the error must say)
    ({"a.de": ALIGNED, "b.en": "one\ntwo\n"}, r"a\.de:3: .*b\.en has only 2 lines"),
    ({"a.de": ALIGNED, "b.en": "one\n\nthree\n"}, r"b\.en:2: empty line on one side.*'zwei'"),
    ({"a.de": ALIGNED, "b.en": b"one\ntwo\nthr\xe9e\n"},
     r"b\.en:3: byte 0xe9 at column 4 is not valid utf-8"),
    ({"p.tsv": "src\ttgt\neins\tone\nzwei\n"}, r"p\.tsv:3: expected at least 2 tab-separated"),
    ({"p.tsv": "de\ten\neins\tone\n"}, r"p\.tsv:1: no column 'src'"),
    ({"p.jsonl": '{"src": "eins", "tgt": "one"}\n{"src": "zwei", "tgt": " "}\n'},
     r"p\.jsonl:2: empty line on one side"),
    ({"p.jsonl": '{"src": "eins", "tgt": "one"}\n{"src": "zwei"\n'}, r"p\.jsonl:2: bad JSON"),
]


@pytest.mark.parametrize("files, match", BAD_INPUT)
def test_readers_name_the_file_and_line_of_bad_input(tmp_path, files, match):
    paths = []
    for name, content in files.items():
        paths.append(tmp_path / name)
        if isinstance(content, bytes):
            paths[-1].write_bytes(content)
        else:
            paths[-1].write_text(content)
    with pytest.raises(ValueError, match=match):
        read_user_pairs(paths if len(paths) == 2 else paths[0])


def test_aligned_gzip_files_and_index_columns(tmp_path):
    with gzip.open(tmp_path / "a.gz", "wt") as f:
        f.write("eins zwei\ndrei\n\n")  # a blank last line on both sides is no pair
    (tmp_path / "b.txt").write_text("one two\nthree\n\n")
    assert read_aligned(tmp_path / "a.gz", tmp_path / "b.txt") == [("eins zwei", "one two"),
                                                                    ("drei", "three")]
    (tmp_path / "p.tsv").write_text("x\tone\teins\n")
    assert read_tsv_pairs(tmp_path / "p.tsv", 2, 1) == [("eins", "one")]


@pytest.mark.skipif(not (data_root() / "multi30k" / "raw" / "train.de.gz").is_file(),
                    reason="needs Multi30k in the data folder")
def test_multi30k_splits_in_both_directions():
    de_en = load_multi30k("de", "en")
    assert [len(de_en[s]) for s in ("train", "val", "test")] == [29000, 1014, 1000]
    en_de = load_multi30k("en", "de", test_set="test_2018_flickr")
    assert en_de["train"][0] == de_en["train"][0][::-1] and len(en_de["test"]) == 1071
    with pytest.raises(ValueError, match="test_set"):
        load_multi30k(test_set="test_2019")


# -- subwords, batches, attention -------------------------------------------------------------
@pytest.mark.parametrize("model_type, joint", [("bpe", True), ("unigram", False)])
def test_subwords_round_trip_and_survive_the_checkpoint(corpus, model_type, joint):
    sources = (corpus / "train.de").read_text().splitlines()
    targets = (corpus / "train.en").read_text().splitlines()
    sub = Subwords.learn(sources, targets, vocab_size=40, model_type=model_type, joint=joint)
    assert sub.joint == joint and max(sub.sizes()) <= 40
    assert sub.decode_tgt(sub.encode_tgt(targets[:20])) == targets[:20]
    again = Subwords.from_state_dict(sub.state_dict())
    assert again.encode_src(sources[:20]) == sub.encode_src(sources[:20])


def test_batches_shift_targets_and_keep_references(corpus):
    data = TranslationData(dataset=None, vocab_size=40, files={
        "train": [str(corpus / "train.de"), str(corpus / "train.en")],
        "val": str(corpus / "val.tsv"), "test": str(corpus / "test.jsonl")}, batch_size=8)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    n = batch["tgt_lengths"]
    assert (batch["tgt_in"][:, 0] == 2).all()
    assert (batch["tgt_out"][torch.arange(8), n - 1] == 3).all()
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1].masked_fill(
        batch["tgt_out"][:, :-1] == 3, 0))
    refs = [t for _, t in read_tsv_pairs(corpus / "val.tsv")]
    assert batch["ref"] == [refs[i] for i in batch["index"].tolist()]
    assert data.tokenizer.decode_tgt([row[:k - 1].tolist() for row, k in
                                     zip(batch["tgt_out"], n.tolist())]) == batch["ref"]


@pytest.mark.parametrize("kind", [DotAttention, GeneralAttention, AdditiveAttention])
def test_attention_ignores_padding(kind):
    scorer = kind(6, 6)
    memory = torch.randn(3, 5, 6)
    mask = torch.arange(5) < torch.tensor([5, 2, 4])[:, None]
    context, weights = attend(scorer.scores(torch.randn(3, 4, 6), scorer.keys(memory)), mask,
                              memory)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 6)
    assert (weights.masked_select(~mask[:, None, :]) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    with pytest.raises(ValueError, match="query_size == memory_size"):
        DotAttention(6, 8)


# -- the model ---------------------------------------------------------------------------------
def _toy_batch(B=6, V=14, S=7, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, S + 1, (B,), generator=g)
    lengths[0] = S
    src = [torch.randint(4, V, (int(k),), generator=g).tolist() for k in lengths]
    tgt = [torch.randint(4, V, (int(torch.randint(1, T, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(B)]
    return src, tgt, {**pad_sources(src), **pad_targets(tgt)}


@pytest.mark.parametrize("cell, kind, input_feed, backend, layers", [
    ("lstm", "general", True, "auto", 2), ("lstm", "additive", False, "custom", 2),
    ("gru", "dot", True, "custom", 2), ("rnn", "additive", True, "auto", 2),
    ("lstm", "general", True, "auto", 1)])  # the last: teacher forcing by InputFedLSTM
def test_step_by_step_decoding_matches_teacher_forcing(cell, kind, input_feed, backend, layers):
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12, num_layers=layers, cell=cell, attention=kind,
                    input_feed=input_feed, options={"backend": backend},
                    tie_embeddings=input_feed).eval()
    tgt_in = batch["tgt_in"].clamp(max=11)
    with torch.no_grad():
        forced = model.generator(model(batch["src"], batch["src_lengths"], tgt_in))  # (B, T, V)
        state, stepped = model.encode(batch["src"], batch["src_lengths"]), []
        for t in range(tgt_in.size(1)):
            log_probs, state = model.step(tgt_in[:, t], state)
            stepped.append(log_probs)
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, bias", [("general", True), ("dot", False)])
def test_fused_input_feeding_matches_the_step_loop(kind, bias):
    """Outputs and every parameter's gradient of InputFedLSTM's teacher forcing equal the
    autograd loop over ``advance`` (dropout off: the two draw their masks differently)."""
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12, attention=kind, dropout=0.0, options={"bias": bias})
    tgt_in, keep = batch["tgt_in"].clamp(max=11), batch["tgt_out"] != 0
    weights = torch.randn(int(keep.sum()), 12)

    def run(loop=False):
        model.zero_grad()
        state = model.encode(batch["src"], batch["src_lengths"])
        emb = model.tgt_embed(tgt_in)
        decoded = model.decoder.loop(emb, state) if loop else model.decoder(emb, state)
        log_probs = model.generator(decoded)[keep]
        (log_probs * weights).sum().backward()
        return (log_probs, decoded.attention,
                {n: p.grad.clone() for n, p in model.named_parameters()})
    assert model.decoder.fusable(tgt_in)
    fused = run()
    loop = run(loop=True)
    torch.testing.assert_close(fused[0], loop[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[1], loop[1], atol=1e-6, rtol=1e-5)
    assert fused[2].keys() == loop[2].keys()
    for name in loop[2]:
        torch.testing.assert_close(fused[2][name], loop[2][name], atol=1e-6, rtol=1e-5,
                                   msg=lambda m: f"{name}: {m}")
    # mixed precision: bfloat16 products, the same result to bfloat16's precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = run()
    torch.testing.assert_close(low[0].float(), loop[0], atol=0.05, rtol=0.05)
    for name in loop[2]:
        torch.testing.assert_close(low[2][name], loop[2][name], atol=0.02, rtol=0.1,
                                   msg=lambda m: f"{name}: {m}")


def test_fused_input_feeding_gradcheck():
    from seqkit.models.input_feed import InputFedLSTM

    g = torch.Generator().manual_seed(0)
    B, T, E, H, S, A = 2, 3, 3, 4, 5, 3

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    drop = (torch.rand(B, T, A, generator=g) > 0.3).double() / 0.7
    inputs = (r(B, T, E), r(B, H), r(B, H), r(B, S, 6), r(B, S, H), mask, r(4 * H, E + A),
              r(4 * H, H), r(4 * H), r(4 * H), r(A, 6 + H), drop)
    assert torch.autograd.gradcheck(lambda *x: InputFedLSTM.apply(*x)[0], inputs)


def test_output_layer_on_kept_positions_only():
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12).eval()
    tgt_in = batch["tgt_in"].clamp(max=11)
    keep = batch["tgt_out"] != 0
    with torch.no_grad():
        decoded = model(batch["src"], batch["src_lengths"], tgt_in)
        full = model.generator(decoded)
        logits = model.generator.logits(decoded.vectors[keep])
        with torch.autocast("cpu", dtype=torch.bfloat16):  # rows padded to 64, then cut
            low = model.generator.logits(decoded.vectors[keep])
    assert not keep.all()  # the batch has padding to leave out
    torch.testing.assert_close(logits.log_softmax(-1), full[keep])
    assert low.shape == logits.shape and low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), logits, atol=0.05, rtol=0.05)


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


def test_model_overfits_one_batch_and_decodes_it():
    src, tgt, batch = _toy_batch(B=8, V=12, seed=1)
    model = seq2seq(12, 12, embed_dim=24, hidden_size=32, dropout=0.0, share_embeddings=True,
                    tie_embeddings=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(120):
        log_probs = model.generator(model(batch["src"], batch["src_lengths"], batch["tgt_in"]))
        loss = label_smoothed_nll(log_probs, batch["tgt_out"], 0, 0.0)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert generate(model, batch["src"], batch["src_lengths"]) == tgt
    assert generate(model, batch["src"], batch["src_lengths"], beam_size=3) == tgt


# -- end to end --------------------------------------------------------------------------------
def test_bf16_mixed_training_keeps_the_fused_optimizer_and_clips(tmp_path, corpus,
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
    train(train_config(tmp_path, tiny_translation(corpus, "trainer.precision=bf16-mixed",
                                                  "trainer.max_epochs=1",
                                                  "trainer.gradient_clip_val=0.5")))
    assert made and made[0].get("fused") is True
    assert norms and set(norms) == {0.5}


def test_translation_run_folder_bleu_and_predict(tmp_path, corpus, monkeypatch):
    metrics = train(train_config(tmp_path, tiny_translation(corpus)))
    assert metrics["test/bleu"] > 60, metrics
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"test/bleu", "test/ppl", "test/sents_per_s", "checkpoint"} <= results.keys()
    hyps = (tmp_path / "outputs.test.txt").read_text().splitlines()
    assert len(hyps) == 24 and sorted((tmp_path / "plots").glob("attention_*.png"))
    assert "tok:13a" in json.loads((tmp_path / "scores.test.json").read_text())["signature"]
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(corpus / "test.ref"), "-i",
                          str(tmp_path / "outputs.test.txt"), "-b", "-w", "2"],
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
def test_ddp_bleu_covers_the_whole_test_set(tmp_path, corpus):
    out = run_train_py(*tiny_translation(corpus, "trainer=ddp", "callbacks=none"),
                       f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    hyps = (tmp_path / "outputs.test.txt").read_text().splitlines()
    assert len(hyps) == 24  # not the half one rank decoded
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(corpus / "test.ref"), "-i",
                          str(tmp_path / "outputs.test.txt"), "-b", "-w", "2"],
                         capture_output=True, text=True, timeout=60)
    assert float(cli.stdout) == pytest.approx(results["test/bleu"], abs=0.006)


def test_translation_benchmark_script_runs(tmp_path, corpus):
    out = subprocess.run([sys.executable, "scripts/bench_translation.py", "--threads", "1",
                          "--steps", "3", "--warmup", "1", "--sentences", "8", "--json",
                          str(tmp_path / "bench.json"), "--", *tiny_translation(corpus)[1:]],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads((tmp_path / "bench.json").read_text())
    assert row["threads"] == 1 and row["train_tokens_per_s"] > 0 and row["beam5_sents_per_s"] > 0
