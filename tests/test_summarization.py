"""Summarization: the pointer-generator's mixed distribution, coverage, words with an extended
vocabulary, ROUGE against rouge-score under the multi-reference protocol, SciTLDR reading,
and train(cfg) end to end on a tiny synthetic copy task, then predict."""
import json
import random
import subprocess
import sys

import pytest
import torch

import seqkit
from seqkit.data.cache import data_root
from seqkit.data.parallel import pad_sources, pad_targets
from seqkit.data.summarization import load_scitldr, read_scitldr, split_sentences
from seqkit.data.words import Words
from seqkit.metrics.rouge import MultiRefRouge
from seqkit.predict import load, transduce
from seqkit.tasks.seq2seq import coverage_loss
from seqkit.train import train
from tests.helpers import ROOT, seq2seq, shared_file, train_config

V = 12  # toy vocabulary: ids 4..11 are words


def _copy_batch(B=5, S=7, T=5, n_ext=3, seed=0):
    """Sources with some extended ids (V .. V + n_ext - 1) and targets of known ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, S + 1, (B,), generator=g)
    lengths[0] = S
    src_ext = [torch.randint(4, V + n_ext, (int(k),), generator=g).tolist() for k in lengths]
    src = [[i if i < V else 1 for i in row] for row in src_ext]
    tgt = [torch.randint(4, V + n_ext, (T,), generator=g).tolist() for _ in range(B)]
    batch = {**pad_sources(src), **pad_targets(tgt)}
    batch["src_ext"] = pad_sources(src_ext)["src"]
    return batch


def _model(copy=True, coverage=True, cell="lstm"):
    torch.manual_seed(0)
    return seq2seq(V, V, cell=cell, attention="additive", share_embeddings=True, copy=copy,
                   coverage=coverage).eval()


def _forced(model, batch, n_ext=3):
    """log P over the extended vocabulary and the attention weights, teacher-forced."""
    decoded = model(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["src_ext"], n_ext)
    return model.generator(decoded, batch["src_ext"], n_ext), decoded.attention


# -- pointer-generator -----------------------------------------------------------------------
def test_mixed_distribution_sums_to_one_over_the_extended_vocabulary():
    batch, model = _copy_batch(), _model()
    with torch.no_grad():
        log_probs, _ = _forced(model, batch)
    assert log_probs.shape[-1] == V + 3
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))


def test_with_p_gen_zero_the_output_is_the_attention_copy_distribution():
    batch, model = _copy_batch(), _model()
    with torch.no_grad():
        model.generator.gen.weight.zero_()
        model.generator.gen.bias.fill_(-1e4)  # sigmoid(-1e4) == 0 in float32
        log_probs, weights = _forced(model, batch)
    expected = torch.zeros(*weights.shape[:2], V + 3)
    for b in range(weights.size(0)):
        for i, word in enumerate(batch["src_ext"][b].tolist()):
            expected[b, :, word] += weights[b, :, i]
    torch.testing.assert_close(log_probs.exp(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_copy_and_coverage_decode_step_by_step_as_in_teacher_forcing(cell):
    batch, model = _copy_batch(), _model(cell=cell)
    with torch.no_grad():
        forced, weights = _forced(model, batch)
        state = model.encode(batch["src"], batch["src_lengths"], batch["src_ext"], 3)
        stepped = []
        for t in range(batch["tgt_in"].size(1)):
            torch.testing.assert_close(state["coverage"], weights[:, :t].sum(1))  # running sum
            log_probs, state = model.step(batch["tgt_in"][:, t], state)
            stepped.append(log_probs)
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)


def test_coverage_loss_on_a_hand_checked_example():
    # step 1: coverage 0 -> 0; step 2: coverage (.5, .5) -> min(.9, .5) + min(.1, .5) = .6;
    # step 3: coverage (1.4, .6) -> min(.2, 1.4) + min(.8, .6) = .8; the padded step 4 is out
    weights = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]]])
    mask = torch.tensor([[True, True, True, False]])
    assert coverage_loss(weights, mask).item() * 3 == pytest.approx(0.0 + 0.6 + 0.8)


def test_coverage_needs_additive_attention():
    with pytest.raises(ValueError, match="additive"):
        seq2seq(V, V, attention="general", coverage=True)


# -- words -----------------------------------------------------------------------------------
def test_words_extend_the_vocabulary_with_source_words_and_decode_them():
    words = Words.learn(["the model learns the task", "the task"], ["the model"], min_freq=1)
    ids, oovs = words.extend("The Zyzzyva model eats zyzzyva and quokkas.")
    n = len(words.vocab)
    assert oovs == ["zyzzyva", "eats", "and", "quokkas", "."]
    assert ids[1] == ids[4] == n and ids[0] == words.vocab["the"]
    target = words.extend_target("quokkas learn the unknown", oovs)
    assert target[0] == n + 3 and target[3] == words.vocab.unk_index
    assert words.decode_tgt([target], [oovs]) == ["quokkas <unk> the <unk>"]
    assert Words.from_state_dict(words.state_dict()).extend("eats the")[0] == words.extend(
        "eats the")[0]


def test_an_unknown_source_word_is_generated_and_comes_back_as_text():
    words = Words.learn(["a b c"], ["a b"], min_freq=1)
    model = seq2seq(len(words.vocab), len(words.vocab), attention="additive",
                    share_embeddings=True, copy=True).eval()
    with torch.no_grad():
        model.generator.gen.weight.zero_()
        model.generator.gen.bias.fill_(-1e4)  # copy only: the one source word is all there is
    artifacts = {"tokenizer": words.state_dict(), "decoding": {"max_len_a": 0, "max_len_b": 2}}
    assert transduce(model, artifacts, ["Quokka", ""], beam_size=1) == ["quokka quokka", ""]
    assert transduce(model, artifacts, ["Quokka"], beam_size=3) == ["quokka quokka"]


# -- ROUGE -----------------------------------------------------------------------------------
def test_rouge_equals_rouge_score_under_the_best_reference_protocol():
    from rouge_score import rouge_scorer

    rng = random.Random(0)
    vocab = "the a model network learns trains data loss fast new method we propose".split()
    docs = [([" ".join(rng.choices(vocab, k=rng.randint(3, 12)))
              for _ in range(rng.randint(1, 4))], " ".join(rng.choices(vocab, k=8)))
            for _ in range(40)]
    docs.append((["Exactly this."], "exactly THIS"))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for refs, hyp in docs:
        scores = [scorer.score(r, hyp) for r in refs]
        best = scores[max(range(len(refs)), key=lambda i: (scores[i]["rouge1"].fmeasure, -i))]
        for k in expected:
            expected[k] += 100 * best[k].fmeasure / len(docs)
    got = MultiRefRouge().corpus([h for _, h in docs], [r for r, _ in docs])
    assert got == pytest.approx(expected, abs=1e-9)


def test_lead_and_oracle_baselines():
    rouge = MultiRefRouge()
    docs = [["We study cats.", "We propose a new loss for training dogs."]]
    refs = [["a new loss for training dogs"]]
    scores = rouge.baselines(docs, refs)
    assert scores["oracle"]["rouge1"] == pytest.approx(100 * 2 * 6 / 6 / (6 / 8 + 1) * 6 / 8)
    assert scores["lead1"]["rouge1"] == 0.0


# -- data ------------------------------------------------------------------------------------
@pytest.mark.skipif(not (data_root() / "scitldr").is_dir(), reason="needs SEQKIT_DATA")
def test_scitldr_splits_have_the_official_sizes():
    shared_file("scitldr", "SciTLDR-A/test.jsonl")  # skips where the data is not here
    splits = load_scitldr()
    assert {k: len(v) for k, v in splits.items()} == {"train": 1992, "val": 619, "test": 618}
    assert all(len(d.summaries) == 1 for d in splits["train"])
    assert max(len(d.summaries) for d in splits["test"]) > 1


@pytest.mark.parametrize("text, match", [
    ('{"source": ["A."], "target": ["b"]}\n{"source": [], "target": ["c"]}\n',
     r"x\.jsonl:2: paper '\?' has an empty source"),
    ('{"source": ["A."], "target": ["b"]}\n{"source": ["A."]}\n',
     r"x\.jsonl:2: expected an object with keys"),
    ('{"source": ["A."], "target": ["b"]\n', r"x\.jsonl:1: bad JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, text, match):
    (tmp_path / "x.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_scitldr(tmp_path / "x.jsonl")


def test_sentences_of_plain_text():
    assert split_sentences("We propose X. It works (mostly). 3 tests pass! e.g. this") == [
        "We propose X.", "It works (mostly).", "3 tests pass! e.g. this"]


# -- end to end ------------------------------------------------------------------------------
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
    assert len((tmp_path / "outputs.test.txt").read_text().splitlines()) == 16
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


def test_copy_needs_one_vocabulary_and_no_label_smoothing():
    from seqkit.tasks.seq2seq import Seq2SeqTask

    with pytest.raises(ValueError, match="share_embeddings"):
        seq2seq(V, V, attention="additive", copy=True)
    with pytest.raises(ValueError, match="label_smoothing=0"):
        Seq2SeqTask(_model(), torch.optim.Adam, label_smoothing=0.1)
