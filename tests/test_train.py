"""Configs compose; train(cfg) and ``python train.py`` run the sentiment task end to end on tiny
data, on the hardware there is, in multirun sweeps and under DDP."""
import csv
import inspect
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate

from seqkit.predict import classify, load
from seqkit.train import CONFIGS, choose_hardware, train
from tests.helpers import ROOT, run_train_py, tiny_sentiment, train_config

GROUPS = sorted(p.parent.name + "=" + p.stem for p in CONFIGS.glob("*/*.yaml")
                if p.parent.name not in ("hydra", "paths"))


DIMS = {"vocab_size": 10, "num_classes": 2, "char_vocab_size": 10, "scheme": "IOBES",
        "src_vocab_size": 14, "tgt_vocab_size": 14,
        "tag_names": ["O", "B-PER", "I-PER", "E-PER", "S-PER"]}


@pytest.mark.parametrize("choice", GROUPS)
def test_every_config_composes_and_instantiates(choice, tmp_path, tiny_files):
    group, name = choice.split("=")
    if group == "hparams_search":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    task = {"scitldr": "summarization", "summarization_files": "summarization",
            "midi_files": "music", "text_files": "lm", "tinyshakespeare": "lm"}.get(
                name, "sentiment")
    overrides = [choice] if group in ("task", "experiment") else [f"task={task}", choice]
    if choice == "data=sentiment_files":
        overrides += [f"data.files.{k}={v}" for k, v in tiny_files.items()]
    if choice == "data=ner_files":
        conll = tmp_path / "tiny.conll"
        conll.write_text("John B-PER\nruns O\n\nMary B-PER\nsings O\n")
        overrides += [f"data.files.{k}={conll}" for k in ("train", "val", "test")]
    if choice == "data=parallel_files":
        pairs = tmp_path / "pairs.tsv"
        pairs.write_text("src\ttgt\neins zwei\tone two\ndrei\tthree\n")
        overrides += [f"data.files.{k}={pairs}" for k in ("train", "val", "test")]
    if choice == "data=summarization_files":
        docs = tmp_path / "docs.jsonl"
        docs.write_text('{"source": "A b. C d.", "summary": "b d"}\n')
        overrides += [f"data.files.{k}={docs}" for k in ("train", "val", "test")]
    if choice == "data=midi_files":
        from seqkit.data.music import roll_to_midi

        for k in ("train", "val", "test"):
            roll_to_midi(torch.eye(88)[30:40].numpy(), tmp_path / k / "a.mid")
            overrides.append(f"data.files.{k}={tmp_path / k}")
    if choice == "data=text_files":
        (tmp_path / "text.txt").write_text("To be, or not to be\n" * 20)
        overrides.append(f"data.files={tmp_path / 'text.txt'}")
    cfg = train_config(tmp_path, overrides)
    if cfg.get("model"):
        accepted = inspect.signature(get_class(cfg.model._target_)).parameters
        instantiate(cfg.model, **{k: v for k, v in DIMS.items() if k in accepted})
    if group == "data" and name.endswith("_files"):
        instantiate(cfg.data).setup()
    elif group == "data":
        assert instantiate(cfg.data).dataset == cfg.data.dataset
    if group == "trainer" and (name != "gpu" or torch.cuda.is_available()):
        choose_hardware(cfg.trainer)
        instantiate(cfg.trainer)
    for node in (cfg.get("callbacks") or {}).values():
        if node:
            instantiate(node)


def test_train_writes_a_complete_run_folder_and_predicts(tmp_path, tiny_files):
    metrics = train(train_config(tmp_path, tiny_sentiment(tiny_files, "trainer.max_epochs=6",
                                                          "module.optimizer.lr=0.01")))
    assert metrics["test/acc"] >= 0.9  # the tiny set is separable
    assert metrics["train/examples_per_s"] > 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test/acc"] == pytest.approx(metrics["test/acc"])
    assert {"test/acc", "test/f1", "checkpoint"} <= results.keys()
    best = Path(results["checkpoint"])
    assert best.is_file() and best.name.startswith("best")
    for path in ("config.yaml", "checkpoints/last.ckpt", "csv/metrics.csv",
                 "plots/learning_curves.png", "plots/confusion_matrix.png"):
        assert (tmp_path / path).is_file(), path
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    model, artifacts = load(best)
    rows = classify(model, artifacts, ["the film is superb great", "the film is awful dull"])
    assert [r["label"] for r in rows] == ["1", "0"]
    assert sum(rows[0]["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    # text as people type it reads as the pre-tokenized text of training files does
    assert artifacts["tokenizer"] == "simple"
    typed, tokenized = (classify(model, artifacts, texts) for texts in (
        ["The film is SUPERB!", "The film isn't awful, dull."],
        ["the film is superb !", "the film is n't awful , dull ."]))
    assert [r["probs"] for r in typed] == [r["probs"] for r in tokenized]


def test_cli_without_a_task_lists_the_tasks_and_unknown_keys_are_named(tmp_path):
    out = run_train_py(f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0 and "sentiment" in out.stderr + out.stdout
    out = run_train_py("task=sentiment", "model.no_such_key=1", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0 and "no_such_key" in out.stderr + out.stdout
    out = run_train_py("task=no_such_task", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0 and "no_such_task" in out.stderr + out.stdout


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, tiny_files):
    out = run_train_py(*tiny_sentiment(tiny_files, "trainer=ddp", "trainer.max_epochs=1"),
                       f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["test/acc"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp", "ddp_fork"])
def test_ddp_follows_the_single_process_curve_at_the_same_global_batch(tmp_path, tiny_files,
                                                                       trainer):
    """2 CPU processes x batch 8 against 1 process x batch 16, dropout off: every step sees the
    same 16 examples, so the weights and the validation curve agree to float rounding. The
    processes are started afresh (ddp) or forked from the one that built the model (ddp_fork)."""
    runs = {"one": ["data.batch_size=16"], "ddp": [f"trainer={trainer}", "data.batch_size=8"]}
    for name, extra in runs.items():
        out = run_train_py(*tiny_sentiment(tiny_files, "trainer.max_epochs=4", "model.dropout=0",
                                           "model.embed_dropout=0", "logger=csv",
                                           "module.optimizer.lr=0.01", *extra),
                           f"hydra.run.dir={tmp_path / name}")
        assert out.returncode == 0, out.stderr[-3000:]
    curves = {}
    for name in runs:
        with open(tmp_path / name / "csv" / "metrics.csv") as f:
            curves[name] = [float(r["val/loss"]) for r in csv.DictReader(f) if r["val/loss"]]
    assert len(curves["one"]) == len(curves["ddp"]) == 4
    assert curves["one"][0] != curves["one"][-1]  # it learnt something
    # tolerance: float32 sums in another order, compounded over 16 Adam steps
    assert curves["ddp"] == pytest.approx(curves["one"], rel=1e-4)
    a, b = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=False)
            for n in runs)
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=1e-4, rtol=1e-4, msg=key)


@pytest.mark.slow
def test_two_nodes_started_by_torchrun_follow_the_single_process_curve(tmp_path, tiny_files):
    """Two "nodes" on this machine, as docs/training.md starts them on a cluster: torchrun on
    each (--nnodes 2 --nproc-per-node 1, c10d rendezvous on 127.0.0.1, gloo), batch 8 each,
    against one process with the global batch of 16."""
    common = tiny_sentiment(tiny_files, "trainer.max_epochs=4", "model.dropout=0",
                            "model.embed_dropout=0", "logger=csv", "module.optimizer.lr=0.01")
    one = run_train_py(*common, "data.batch_size=16", f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
            "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
            str(ROOT / "train.py"), *common, "trainer=ddp", "trainer.devices=1",
            "trainer.num_nodes=2", "data.batch_size=8", f"hydra.run.dir={tmp_path / 'nodes'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    nodes = [subprocess.Popen(node, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [n.communicate(timeout=600)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    curves = {}
    for name in ("one", "nodes"):
        with open(tmp_path / name / "csv" / "metrics.csv") as f:
            curves[name] = [float(r["val/loss"]) for r in csv.DictReader(f) if r["val/loss"]]
    assert len(curves["one"]) == len(curves["nodes"]) == 4
    assert curves["nodes"] == pytest.approx(curves["one"], rel=1e-4)
    a, b = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=False)
            for n in ("one", "nodes"))
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=1e-4, rtol=1e-4, msg=key)


@pytest.mark.slow
def test_multirun_over_two_cells(tmp_path, tiny_files):
    out = run_train_py("-m", *tiny_sentiment(tiny_files, "model/encoder=gru,lstm",
                                             "trainer.max_epochs=1"), f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.glob("*/results.json"))) == 2


@pytest.mark.slow
def test_optuna_search_three_trials(tmp_path, tiny_files):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = run_train_py("-m", *tiny_sentiment(tiny_files, "hparams_search=sentiment_optuna",
                                             "hydra.sweeper.n_trials=3", "trainer.max_epochs=1"),
                       f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.glob("*/results.json"))) == 3
    assert (tmp_path / "optimization_results.yaml").is_file()


def test_mixed_precision_with_clipping_and_fused_adam(tmp_path, tiny_files):
    """What trainer=gpu does (16-mixed), on CPU with bfloat16: Lightning cannot clip a fused
    optimizer under AMP, and the custom recurrence must run in float32 under autocast."""
    metrics = train(train_config(tmp_path, tiny_sentiment(
        tiny_files, "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
        "model.encoder.backend=custom", "model/encoder=gru", "test=false")))
    assert metrics["train/loss"] == metrics["train/loss"]  # finite, not NaN


@pytest.mark.parametrize("trainer, bf16, chosen", [
    ("default", True, ("gpu", "bf16-mixed")), ("default", False, ("gpu", "16-mixed")),
    ("cpu", True, ("cpu", "32-true")), ("gpu", True, ("gpu", "16-mixed"))])
def test_the_default_trainer_takes_a_gpu_when_there_is_one(trainer, bf16, chosen, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, mocked
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a mocked GPU")
    cfg = train_config(tmp_path, ["task=sentiment", f"trainer={trainer}"])
    choose_hardware(cfg.trainer)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == chosen


def test_without_a_gpu_the_default_trainer_takes_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = train_config(tmp_path, ["task=sentiment"])
    choose_hardware(cfg.trainer)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("cpu", "32-true")
    with pytest.raises(ValueError, match="trainer.accelerator=gpu: this machine has no CUDA"):
        choose_hardware(train_config(tmp_path, ["task=sentiment", "trainer=gpu"]).trainer)
