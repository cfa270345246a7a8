"""Export with parity: the exported step (TorchScript, and ONNX under onnxruntime) against the
eager model, driven over variable-length batches; a decoding loop over the exported step."""
import json

import pytest
import torch

from seqkit import cli
from seqkit.decoding import greedy
from seqkit.export import ExportedStep, export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

MODELS = {
    "lm": {"_target_": "seqkit.models.lm.LanguageModel", "vocab_size": 12, "embed_dim": 6,
           "hidden_size": 10, "num_layers": 2, "dropout": 0.0},
    "music": {"_target_": "seqkit.models.music.PianoRollLM", "num_notes": 88, "embed_dim": 6,
              "hidden_size": 10, "num_layers": 2, "dropout": 0.0},
}


def _checkpoint(tmp_path, task, cell):
    from hydra.utils import instantiate

    config = {**MODELS[task], "cell": cell}
    torch.manual_seed(0)
    model = instantiate(config)
    path = tmp_path / f"{task}-{cell}.ckpt"
    torch.save({"seqkit": {"task": task, "model": config, "level": "char", "fs": 4.0},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model.eval()


def _inputs(task, batch, steps):
    if task == "lm":
        return torch.randint(0, 12, (batch, steps))
    return torch.bernoulli(torch.full((batch, steps, 88), 0.15))


@pytest.mark.parametrize("task, cell", [("lm", "lstm"), ("lm", "gru"), ("music", "lstm")])
def test_exported_steps_match_the_eager_model(tmp_path, task, cell):
    path, model = _checkpoint(tmp_path, task, cell)
    manifest = export(path, tmp_path / "out")
    assert set(manifest["files"]) == {"torchscript", "onnx"}
    assert json.loads((tmp_path / "out" / "export.json").read_text()) == manifest
    assert json.loads((tmp_path / "out" / "artifacts.json").read_text())["task"] == task
    k = 2 if cell == "lstm" else 1
    for fmt, name in manifest["files"].items():
        step = ExportedStep(tmp_path / "out" / name, k, num_layers=2, hidden=10)
        for lengths in ([7, 5, 3, 3, 1], [6]):  # a batch of rows of different lengths
            x = _inputs(task, len(lengths), max(lengths))
            with torch.no_grad():
                want, _ = model(x)  # each row alone is the same: no padding reaches it
            state = tuple(torch.zeros(len(lengths), 2, 10) for _ in range(k))
            for t in range(max(lengths)):
                live = sum(n > t for n in lengths)  # finished rows leave the batch
                state = tuple(s[:live] for s in state)
                outputs = step.run(x[:live, t:t + 1], *(s.transpose(0, 1).contiguous()
                                                        for s in state))
                state = tuple(s.transpose(0, 1) for s in outputs[1:])
                torch.testing.assert_close(outputs[0][:, 0], want[:live, t], atol=1e-5,
                                           rtol=1e-5, msg=f"{fmt} step {t}")


def test_a_decoding_loop_drives_the_exported_step(tmp_path):
    path, model = _checkpoint(tmp_path, "lm", "lstm")
    cli.main(["export", str(path), "--out", str(tmp_path / "out")])
    bos = torch.tensor([1, 4, 7])
    eager = greedy(model.step, None, bos, eos=12, max_len=15)
    for name in ("model.ts", "model.onnx"):
        exported = greedy(ExportedStep(tmp_path / "out" / name, 2, 2, 10), None, bos, eos=12,
                          max_len=15)
        assert torch.equal(exported.tokens, eager.tokens), name
        torch.testing.assert_close(exported.scores, eager.scores, atol=1e-4, rtol=1e-5)


def test_unsupported_models_are_named(tmp_path):
    from seqkit.models.classifier import SentenceClassifier

    config = {"_target_": "seqkit.models.classifier.SentenceClassifier", "vocab_size": 5,
              "num_classes": 2, "embed_dim": 4, "hidden_size": 4}
    weights = SentenceClassifier(5, 2, embed_dim=4, hidden_size=4).state_dict()
    path = tmp_path / "sentiment.ckpt"
    torch.save({"seqkit": {"task": "sentiment", "model": config},
                "state_dict": {f"model.{k}": v for k, v in weights.items()}}, path)
    with pytest.raises(SystemExit, match="exporting a sentiment model is not supported yet"):
        cli.main(["export", str(path), "--out", str(tmp_path / "x")])
