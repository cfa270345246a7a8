"""Export with parity: every task's exported graphs (TorchScript, and ONNX under onnxruntime)
against the eager model on variable-length batches of other sizes than the traced example,
and seqkit's decoding loops driving the exported steps."""
import copy
import json

import pytest
import torch

from seqkit import cli
from seqkit.checkpoint import FORMAT
from seqkit.decoding import greedy
from seqkit.export import ExportedSeq2Seq, ExportedStep, export, load_graph
from seqkit.layers import length_mask
from seqkit.tasks.seq2seq import generate

pytest.importorskip("onnxruntime")

FORMATS = ("torchscript", "onnx")
TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def _layer(hidden_size, num_layers=1, bidirectional=False, **options):
    return {"_target_": "seqkit.layers.LSTM", "_partial_": True, "hidden_size": hidden_size,
            "num_layers": num_layers, "bidirectional": bidirectional, "batch_first": True,
            **options}


def _part(name, **kwargs):
    return {"_target_": f"seqkit.models.{name}", "_partial_": True, **kwargs}


MODELS = {
    "lm": {"_target_": "seqkit.models.lm.LanguageModel", "vocab_size": 12, "embed_dim": 6,
           "encoder": _layer(10, 2), "dropout": 0.0},
    "music": {"_target_": "seqkit.models.music.PianoRollLM", "num_notes": 88, "embed_dim": 6,
              "encoder": _layer(10, 2), "dropout": 0.0},
    "sentiment": {"_target_": "seqkit.models.classifier.SentenceClassifier", "vocab_size": 20,
                  "num_classes": 3, "embed_dim": 6, "encoder": _layer(8, 2, True),
                  "dropout": 0.0, "embed_dropout": 0.0},
    "ner": {"_target_": "seqkit.models.tagger.Tagger", "vocab_size": 20, "char_vocab_size": 9,
            "tag_names": TAGS, "scheme": "IOBES", "word_dim": 6, "case_dim": 3, "char_dim": 4,
            "char_features": 6, "encoder": _layer(8, 1, True), "dropout": 0.0,
            "word_dropout": 0.0},
    "translation": {"_target_": "seqkit.models.seq2seq.Seq2Seq", "src_vocab_size": 15,
                    "tgt_vocab_size": 13, "embed_dim": 6, "encoder": _layer(4, 2, True),
                    "decoder": _part("seq2seq.InputFedDecoder", rnn=_layer(8, 2),
                                     attention=_part("attention.GeneralAttention")),
                    "dropout": 0.0},
    "summarization": {"_target_": "seqkit.models.seq2seq.Seq2Seq", "src_vocab_size": 15,
                      "tgt_vocab_size": 15, "embed_dim": 6, "encoder": _layer(4, 1, True),
                      "decoder": _part("seq2seq.InputFedDecoder", rnn=_layer(8),
                                       attention=_part("attention.AdditiveAttention"),
                                       coverage=_part("seq2seq.Coverage")),
                      "generator": _part("seq2seq.CopyGenerator"), "dropout": 0.0,
                      "share_embeddings": True},
}


def _checkpoint(tmp_path, task, cell="lstm", input_feed=True, **options):
    """A checkpoint of the task's toy model with ``cell`` layers and its other options."""
    from hydra.utils import instantiate

    config = copy.deepcopy(MODELS[task])
    layer = f"seqkit.layers.{cell.upper()}"
    config["encoder"].update(_target_=layer, **{k: options.pop(k) for k in
                                                ("bidirectional", "layer_norm", "proj_size")
                                                if k in options})
    if "decoder" in config:
        config["decoder"]["rnn"]["_target_"] = layer
        if not input_feed:
            config["decoder"]["_target_"] = "seqkit.models.seq2seq.Decoder"
    config.update(options)
    torch.manual_seed(0)
    model = instantiate(config)
    for p in model.parameters():  # trained-looking weights: CRF transitions are 0 at init
        p.data.uniform_(-0.5, 0.5)
    path = tmp_path / f"{task}.ckpt"
    torch.save({"seqkit": {"task": task, "model": config, "level": "char", "fs": 4.0,
                           "format": FORMAT},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model.eval()


def _padded(lengths, high, *extra):
    """Random ids in [1, high) of shape (B, T, *extra), 0 past each length."""
    lengths = torch.tensor(lengths)
    mask = length_mask(lengths, int(lengths.max()))
    x = torch.randint(1, high, (len(lengths), int(lengths.max()), *extra))
    return x * mask.view(*mask.shape, *(1 for _ in extra)), lengths


LENGTHS = ([7, 2, 1, 7, 4], [1], [3, 2])  # unsorted, with ties, B and T unlike the example


def _cases(tmp_path, task, options):
    """Export the task's model; yield (format, its ``model`` graph, the eager model, padded
    ids (B, T), lengths) for each format and batch of LENGTHS."""
    path, model = _checkpoint(tmp_path, task, **options)
    export(path, tmp_path / "out")
    for fmt in FORMATS:
        graph = load_graph(tmp_path / "out", "model", fmt)
        for lengths in LENGTHS:
            yield (fmt, graph, model, *_padded(lengths, 20))


@pytest.mark.parametrize("task, cell", [("lm", "lstm"), ("lm", "gru"), ("music", "lstm")])
def test_exported_steps_match_the_eager_model(tmp_path, task, cell):
    path, model = _checkpoint(tmp_path, task, cell=cell)
    manifest = export(path, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "export.json").read_text()) == manifest
    assert json.loads((tmp_path / "out" / "artifacts.json").read_text())["task"] == task
    k = 2 if cell == "lstm" else 1
    for fmt in FORMATS:
        step = load_graph(tmp_path / "out", "step", fmt)
        for lengths in ([7, 5, 3, 3, 1], [6]):  # rows leave the batch as they end
            x = (torch.randint(0, 12, (len(lengths), max(lengths))) if task == "lm" else
                 torch.bernoulli(torch.full((len(lengths), max(lengths), 88), 0.15)))
            with torch.no_grad():
                want, _ = model(x)
            state = tuple(torch.zeros(2, len(lengths), 10) for _ in range(k))
            for t in range(max(lengths)):
                live = sum(n > t for n in lengths)
                outputs = step(x[:live, t:t + 1], *(s[:, :live].contiguous() for s in state))
                state = tuple(outputs[1:])
                torch.testing.assert_close(outputs[0][:, 0], want[:live, t], atol=1e-5,
                                           rtol=1e-5, msg=f"{fmt} step {t}")


@pytest.mark.parametrize("options", [{}, {"proj_size": 4}])  # h of 4 features, c of 10
def test_a_decoding_loop_drives_the_exported_step(tmp_path, options):
    path, model = _checkpoint(tmp_path, "lm", cell="lstm", **options)
    formats = FORMATS
    if options:  # ONNX's LSTM has no projection: said in one line, TorchScript has it
        with pytest.raises(SystemExit, match="no projection"):
            cli.main(["export", str(path), "--out", str(tmp_path / "out")])
        formats = ("torchscript",)
    cli.main(["export", str(path), "--out", str(tmp_path / "out"), "--format", *formats])
    bos = torch.tensor([1, 4, 7])
    eager = greedy(model.step, None, bos, eos=12, max_len=15)
    for fmt in formats:
        exported = greedy(ExportedStep(tmp_path / "out", fmt), None, bos, eos=12, max_len=15)
        assert torch.equal(exported.tokens, eager.tokens), fmt
        torch.testing.assert_close(exported.scores, eager.scores, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("options", [{"cell": "lstm", "pooling": "max"},
                                     {"cell": "gru", "pooling": "last"},
                                     {"cell": "rnn", "pooling": "attention",
                                      "bidirectional": False}])
def test_exported_classifier_matches_the_eager_model(tmp_path, options):
    for fmt, graph, model, tokens, lengths in _cases(tmp_path, "sentiment", options):
        with torch.no_grad():
            want = model(tokens, lengths)
        torch.testing.assert_close(graph(tokens, lengths)[0], want, atol=1e-5, rtol=1e-5,
                                   msg=fmt)


@pytest.mark.parametrize("options", [{"cell": "lstm", "char_encoder": "cnn"},
                                     {"cell": "gru", "char_encoder": "lstm"},
                                     {"cell": "lstm", "char_encoder": None, "crf": False}])
def test_exported_tagger_decodes_as_the_eager_model(tmp_path, options):
    for fmt, graph, model, words, lengths in _cases(tmp_path, "ner", options):
        cases = words.clamp(max=5)
        chars = torch.randint(1, 9, (*words.shape, 5))  # (B, T, W) words of 1-5 chars
        chars *= torch.arange(5) < torch.randint(1, 6, (*words.shape, 1))
        chars *= (words > 0)[..., None]
        mask = length_mask(lengths, words.size(1))
        with torch.no_grad():
            scores = model(words, cases, chars, lengths)
        got_scores, tags = graph(words, cases, chars, lengths)
        torch.testing.assert_close(got_scores, scores, atol=1e-5, rtol=1e-5, msg=fmt)
        want = model.decode(scores, mask)
        assert [row[:n] for row, n in zip(tags.tolist(), lengths.tolist())] == want, fmt
        assert not tags[~mask].any()


@pytest.mark.parametrize("task, options", [("translation", {"cell": "lstm"}),
                                           ("translation", {"cell": "gru",
                                                            "input_feed": False}),
                                           ("summarization", {"cell": "lstm"})])
def test_search_over_the_exported_seq2seq_equals_the_eager_search(tmp_path, task, options):
    path, model = _checkpoint(tmp_path, task, **options)
    manifest = export(path, tmp_path / "out")
    assert set(manifest["graphs"]) == {"encoder", "step"}
    src, lengths = _padded([6, 2, 9, 1], 15)
    extra = {}
    if model.copy:  # two unknown source words, ids 15 and 16 of the extended vocabulary
        src_ext = src.clone()
        src_ext[0, :2] = torch.tensor([15, 16])
        extra = {"src_ext": src_ext, "n_ext": 2}
    with torch.no_grad():
        state = model.encode(src, lengths, **extra)
        want_first, _ = model.step(torch.full((4,), model.bos_index), state)
        want = {beam: generate(model, src, lengths, beam_size=beam, max_len_b=8, **extra)
                for beam in (1, 3)}
    assert any(len(row) > 2 for row in want[3])  # the search ran for a few steps
    for fmt in FORMATS:
        exported = ExportedSeq2Seq(tmp_path / "out", fmt)
        first, _ = exported.step(torch.full((4,), model.bos_index),
                                 exported.encode(src, lengths, **extra))
        torch.testing.assert_close(first, want_first, atol=1e-5, rtol=1e-5, msg=fmt)
        for beam in (1, 3):
            got = generate(exported, src, lengths, beam_size=beam, max_len_b=8, **extra)
            assert got == want[beam], (fmt, beam)


def test_layers_without_fused_kernels_are_named(tmp_path):
    path, _ = _checkpoint(tmp_path, "sentiment", layer_norm=True)
    with pytest.raises(SystemExit, match="layer_norm"):
        cli.main(["export", str(path), "--out", str(tmp_path / "x")])


def test_artifacts_json_holds_a_tokenizers_bytes_as_base64():
    """A subword or sentencepiece model is bytes in a checkpoint; artifacts.json is text."""
    import base64

    from seqkit.export import _base64

    proto = bytes(range(256))
    text = json.dumps({"tokenizer": {"src": proto}}, default=_base64)
    assert base64.b64decode(json.loads(text)["tokenizer"]["src"]) == proto
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        json.dumps({1, 2}, default=_base64)
