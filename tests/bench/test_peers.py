"""The side-by-side benchmarks: the CRF against pytorch-crf on a small grid (losses and paths
checked equal first); each training peer receives seqkit's timer, model and recipe; ABBA
rounds; medians, ranges and each round's ratio in the tables."""
import argparse
import importlib.util
import inspect
import json
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir

from seqkit.bench.peers import (PEER_RUNS, REPORT_EVERY, abba, main, ner_plan, peer_command,
                                table, translation_plan)
from seqkit.data.parallel import TranslationData
from seqkit.train import CONFIGS


def test_crf_grid_gives_a_row_per_shape_and_op(tmp_path, capsys):
    pytest.importorskip("torchcrf")
    out = tmp_path / "crf.json"
    main(["crf", "--threads", "1", "--repeats", "2", "--batch", "2", "5", "--length", "6",
          "--tags", "3", "--json", str(out), "--work", str(tmp_path)])
    rows = json.loads(out.read_text())
    assert [(r["batch"], r["op"]) for r in rows] == [
        (b, op) for b in (2, 5) for op in ("forward", "forward+backward", "viterbi")]
    # rounds dominate elementwise, so do their medians: the ratio lies in the rounds' range
    assert all(r["ratio_range"][0] <= r["ratio"] <= r["ratio_range"][1] for r in rows)
    assert "| viterbi | 1 | 5 | 6 | 3 |" in capsys.readouterr().out


def _peer_script(name: str):
    """A peer's script as a module (it imports its library only when it runs)."""
    spec = importlib.util.spec_from_file_location(name, PEER_RUNS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seqkit_config(overrides: list[str]):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides)


def _options(module, options: dict, tmp_path):
    """The arguments the peer's script parses from the command the bench gives it."""
    return module.arguments(peer_command("python", "x.py", options, tmp_path, 2)[2:])


ARGS = argparse.Namespace(epochs=3, embed=300, min_freq=3, precision=["32-true", "bf16-mixed"])


def test_seqkit_and_flair_receive_the_same_timer_model_and_recipe(tmp_path):
    plan = ner_plan(ARGS, tmp_path)
    cfg = _seqkit_config(plan["seqkit"])
    flair = _options(_peer_script("flair_ner"), {**plan["flair"], "seed": 0}, tmp_path)
    # the timer: seqkit's Throughput window, no sanity check, a log line every REPORT_EVERY
    assert cfg.callbacks.throughput._target_ == "seqkit.callbacks.Throughput"
    assert cfg.trainer.num_sanity_val_steps == 0
    assert cfg.trainer.log_every_n_steps == REPORT_EVERY
    # the model, the data and the recipe
    assert (flair.embed, flair.hidden, flair.min_freq) == (
        cfg.model.word_dim, cfg.model.encoder.hidden_size, cfg.data.min_freq)
    assert cfg.model.char_encoder is None and cfg.model.case_dim == 0
    assert (flair.batch, flair.epochs) == (cfg.data.batch_size, cfg.trainer.max_epochs)
    assert cfg.callbacks.early_stopping.patience >= cfg.trainer.max_epochs  # no early stop
    assert flair.optimizer == "adam" and cfg.module.optimizer._target_ == "torch.optim.Adam"
    assert (flair.lr, flair.clip, flair.patience) == (
        cfg.module.optimizer.lr, cfg.trainer.gradient_clip_val, cfg.module.scheduler.patience)
    assert (flair.dropout, flair.word_dropout) == (cfg.model.dropout, cfg.model.word_dropout)
    assert flair.dev == 1  # both pick their best epoch on eng.testa


def test_seqkit_and_opennmt_receive_the_same_timer_model_and_recipe(tmp_path):
    onmt = _peer_script("onmt_translation")
    for precision, plan in translation_plan(ARGS, tmp_path, batches=454).items():
        cfg = _seqkit_config(plan["seqkit"])
        options = _options(onmt, {**plan["onmt"], "seed": 0}, tmp_path)
        peer = yaml.safe_load(onmt.config(options))
        assert cfg.trainer.num_sanity_val_steps == 0
        assert cfg.trainer.log_every_n_steps == peer["report_every"] == REPORT_EVERY
        assert cfg.trainer.precision == precision
        assert options.precision == {"32-true": "32", "bf16-mixed": "bf16"}[precision]
        # the same batches and steps, a checkpoint per epoch, each picked by validation
        assert peer["batch_size"] == cfg.data.batch_size and peer["batch_type"] == "sents"
        assert peer["train_steps"] == 454 * cfg.trainer.max_epochs
        assert peer["save_checkpoint_steps"] == 454 and options.val == 1
        assert cfg.callbacks.early_stopping.patience >= cfg.trainer.max_epochs
        # both read their batches in the training process
        default = inspect.signature(TranslationData).parameters["num_workers"].default
        assert peer["num_workers"] == cfg.data.get("num_workers", default) == 0
        # the model and the recipe
        assert peer["word_vec_size"] == cfg.model.embed_dim
        assert peer["enc_hid_size"] == 2 * cfg.model.encoder.hidden_size
        assert peer["dec_hid_size"] == cfg.model.decoder.rnn.hidden_size
        assert peer["dropout"] == [cfg.model.dropout]
        assert peer["learning_rate"] == cfg.module.optimizer.lr
        assert peer["decay_method"] == "none" and cfg.module.scheduler is None  # constant
        assert peer["max_grad_norm"] == cfg.trainer.gradient_clip_val
        assert peer["label_smoothing"] == cfg.module.label_smoothing


def test_abba_turns_each_pair_round_every_round():
    assert [s for _, s in abba([("a", "b")], 3)] == ["a", "b", "b", "a", "a", "b"]
    assert [t for t, _ in abba([("a", "b"), ("c", "d")], 2)] == [0] * 4 + [1] * 4


def test_tables_give_medians_ranges_and_each_rounds_ratio():
    def row(system, turn, speed, f1):
        return {"system": system, "threads": 2, "round": turn, "load": 1.0, "params": 10,
                "sentences_per_s": speed, "compute_sentences_per_s": 2 * speed,
                "predict_per_s": speed, "wall_s": 5.0, "train_s": 4.0, "data_s": 1.0, "f1": f1}
    rows = [row("seqkit", 0, 30.0, 80.0), row("flair", 0, 10.0, 79.0),
            row("flair", 1, 20.0, 78.0), row("seqkit", 1, 30.0, 80.0),
            row("seqkit", 2, 60.0, 81.0), row("flair", 2, 20.0, 81.0)]
    text = table(rows, "ner")
    assert ("| seqkit | 2 | 3 | 1.00-1.00 | 30.0 (30.0-60.0) | 60.0 (60.0-120.0) "
            "| 25.0 (25.0-25.0) |") in text
    # ratios of each round's pair (3, 1.5, 3), not of the medians (30 / 20)
    assert "| seqkit | 2 | 3.00 (1.50-3.00) | 3.00 (1.50-3.00) | 3.00 (1.50-3.00) |" in text
    assert "| seqkit | 2 | 1.00 (0.00-2.00) |" in text


def test_the_same_command_resumes_an_interrupted_bench(tmp_path, monkeypatch):
    """A finished run (its wall seconds saved beside its log) is not run again; an unfinished
    one's folder is cleared and the run starts over."""
    from seqkit.bench import peers

    log, folder = tmp_path / "ner-seqkit-1t-0.log", tmp_path / "ner-seqkit-1t-0"
    write = "import pathlib, sys; pathlib.Path(sys.argv[1], 'result.json').write_text('{}')"
    cmd = [sys.executable, "-c", write, str(folder)]
    folder.mkdir()
    (folder / "stale.ckpt").write_text("from a killed run")
    wall = peers._run(cmd, 1, log)
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]
    assert float(log.with_suffix(".wall_s").read_text()) == wall
    monkeypatch.setattr(peers.subprocess, "run", lambda *a, **k: pytest.fail("ran again"))
    assert peers._run(cmd, 1, log) == wall
