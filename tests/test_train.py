"""Configs compose; train(cfg) runs the sentiment task end to end on tiny data; resume is exact."""
import csv
import inspect
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate

import seqkit
from seqkit.predict import classify, load
from seqkit.train import CONFIGS, choose_hardware, train
from tests.helpers import ROOT, layer, run_train_py, tiny_sentiment, train_config

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


@pytest.mark.parametrize("callbacks, how, schedule", [
    ("default", "auto_resume", ()), ("ema", "auto_resume", ()), ("default", "ckpt_path", ()),
    # its length stays 2 epochs while the first part runs 1: a run resumed with another length
    # would be another schedule, a run configured otherwise
    ("default", "auto_resume", ("scheduler=warmup", "module.scheduler.max_epochs=2"))])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_files, callbacks,
                                                            how, schedule):
    tiny = partial(tiny_sentiment, tiny_files, "seed=3", f"callbacks={callbacks}", *schedule)
    straight = train(train_config(tmp_path / "a", tiny()))
    train(train_config(tmp_path / "b", tiny("trainer.max_epochs=1", "test=false")))
    again = ("auto_resume=true" if how == "auto_resume" else
             f"ckpt_path={tmp_path / 'b/checkpoints/last.ckpt'}")
    resumed = train(train_config(tmp_path / "c", tiny(again)))  # a new Hydra folder: b continues
    assert json.loads((tmp_path / "b/results.json").read_text())["checkpoint"].startswith(
        str(tmp_path / "b/checkpoints/best-epoch"))
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=0, rtol=0, msg=key)
    assert a["optimizer_states"][0]["state"][0]["step"] == b["optimizer_states"][0]["state"][0][
        "step"]
    assert a["lr_schedulers"] == b["lr_schedulers"]  # a warmup is a SequentialLR: its parts too
    assert a["lr_schedulers"][0]["last_epoch"] == 2  # stepped once an epoch
    assert straight["test/acc"] == resumed["test/acc"]
    if callbacks == "ema":  # the checkpoint holds the average; training resumed the raw weights
        assert any((a["current_model_state"][k] != v).any() for k, v in a["state_dict"].items())
        for key, value in a["current_model_state"].items():
            torch.testing.assert_close(value, b["current_model_state"][key], atol=0, rtol=0)


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
def test_ddp_follows_the_single_process_curve_at_the_same_global_batch(tmp_path, tiny_files):
    """2 CPU processes x batch 8 against 1 process x batch 16, dropout off: every step sees the
    same 16 examples, so the weights and the validation curve agree to float rounding."""
    runs = {"one": ["data.batch_size=16"], "ddp": ["trainer=ddp", "data.batch_size=8"]}
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


def test_unknown_label_is_named_with_its_file(tmp_path, tiny_files):
    bad = tmp_path / "val.tsv"
    bad.write_text("text\tlabel\ngood film\t1\nodd film\tneutral\n")
    cfg = train_config(tmp_path, tiny_sentiment({**tiny_files, "val": bad}))
    with pytest.raises(ValueError, match=r"val\.tsv.*'neutral'"):
        instantiate(cfg.data).setup()


def test_predict_command_reads_arguments_files_and_stdin(tmp_path, tiny_files):
    train(train_config(tmp_path, tiny_sentiment(tiny_files, "trainer.max_epochs=1", "test=false")))
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    cmd = [sys.executable, "-m", "seqkit", "predict", ckpt]
    lines = tmp_path / "in.txt"
    lines.write_text("the film is good\n\nthe film is bad\n")
    for extra, stdin in (([ "the film is good"], None), (["--file", str(lines)], None),
                         (["--file", "-"], "the film is dull\n")):
        out = subprocess.run(cmd + extra, input=stdin, capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        labels = [r["label"] for r in rows]  # one row per line, a blank one included
        if extra[0] == "--file" and stdin is None:
            assert len(rows) == 3 and labels[1] is None and rows[1]["probs"] == {}
            labels = labels[::2]
        assert labels and all(label in ("0", "1") for label in labels)
        texts = (extra if extra[0] != "--file" else
                 (lines.read_text() if stdin is None else stdin).splitlines())
        assert seqkit.load(ckpt).predict(texts) == rows  # the Python API: what the CLI prints



def test_length_pooled_batches_are_reproducible_and_homogeneous():
    from seqkit.data.sampler import EpochShuffle

    lengths = [1 + (i * 7919) % 50 for i in range(1000)]
    sampler = EpochShuffle(len(lengths), lengths, batch_size=32, pool=10)
    first = list(sampler)
    assert sorted(first) == list(range(1000)) and first == list(sampler)
    batches = [first[i:i + 32] for i in range(0, 1000, 32)]
    assert len(batches[-1]) == 1000 % 32  # the short batch comes last
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]]
    # a pool of 320 examples over 50 lengths: about 6 lengths per batch (the last, partial
    # pool holds only 40 examples, so one batch may spread wider)
    assert sorted(spread)[-2] <= 10
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_under_ddp_each_step_holds_the_single_process_batch():
    from seqkit.data.sampler import EpochShuffle

    lengths = [1 + (i * 7919) % 50 for i in range(101)]
    one = list(EpochShuffle(101, lengths, batch_size=16, pool=2))
    ranks = [list(EpochShuffle(101, lengths, batch_size=8, pool=2, rank=r, world_size=2))
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 51  # the odd example out is repeated
    for step in range(7):  # six full batches, then the short one (5 examples, one repeated)
        shares = [r[8 * step:8 * step + 8] for r in ranks]
        assert set(shares[0] + shares[1]) == set(one[16 * step:16 * step + 16])
    assert len(ranks[0][48:]) == 3
    # three processes and a last batch shorter than three: every share as long as __len__
    shares = [list(EpochShuffle(13, None, batch_size=2, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shares] == [5, 5, 5] and set(sum(shares, [])) == set(range(13))
    assert sorted(set(ranks[0] + ranks[1])) == list(range(101))


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_classifier_pools_projected_lstm_states(pooling):
    from seqkit.models.classifier import SentenceClassifier

    model = SentenceClassifier(10, 3, layer(bidirectional=True, proj_size=4), embed_dim=8,
                               pooling=pooling)
    assert model(torch.randint(1, 10, (2, 5)), torch.tensor([5, 2])).shape == (2, 3)


def test_mixed_precision_with_clipping_and_fused_adam(tmp_path, tiny_files):
    """What trainer=gpu does (16-mixed), on CPU with bfloat16: Lightning cannot clip a fused
    optimizer under AMP, and the custom recurrence must run in float32 under autocast."""
    metrics = train(train_config(tmp_path, tiny_sentiment(
        tiny_files, "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
        "model.encoder.backend=custom", "model/encoder=gru", "test=false")))
    assert metrics["train/loss"] == metrics["train/loss"]  # finite, not NaN


def test_throughput_leaves_the_closing_validation_out(monkeypatch):
    import time
    from types import SimpleNamespace

    from seqkit.callbacks import Throughput

    clock = iter([0.0, 1.0, 5.0, 6.0])  # epoch start, validation 1 s -> 5 s, epoch end
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    logged = {}
    module = SimpleNamespace(log_dict=lambda values: logged.update(values))
    trainer = SimpleNamespace(sanity_checking=False)
    meter = Throughput()
    meter.on_train_epoch_start(trainer, module)
    meter.on_train_batch_end(trainer, module, None, {"tokens": torch.zeros(4, 3),
                                                     "lengths": torch.tensor([3, 2, 2, 1])}, 0)
    meter.on_validation_start(trainer, module)
    meter.on_validation_end(trainer, module)
    meter.on_train_epoch_end(trainer, module)
    assert float(logged["train/epoch_s"]) == 2.0  # 6 s in all, 4 s of them validating
    assert float(logged["train/examples_per_s"]) == 2.0
    assert float(logged["train/tokens_per_s"]) == 4.0


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
