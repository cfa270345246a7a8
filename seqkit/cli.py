"""seqkit: train a model and use it. `seqkit <command> --help` for each.

    seqkit train task=sentiment                           # = python train.py ... (Hydra)
    seqkit predict CKPT "a gripping film"                 # classify, tag, translate, summarize
    seqkit predict CKPT --file news.txt --format conll    # one text per line; '-' reads stdin
    seqkit predict MT_CKPT --file test.de --beam 5 > test.hyp.en
    seqkit generate MUSIC_CKPT --out samples/ --samples 4 --frames 128 --primer a.mid --wav
    seqkit generate LM_CKPT --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95
    seqkit evaluate CKPT --split test                     # on the data it was trained with
    seqkit bench rnn --quick                              # the backend benchmarks
    seqkit data prepare task=translation ...              # build a corpus's token store
    seqkit gates CKPT "a gripping film" --out gates.png   # the encoder's gates over a text
    seqkit export CKPT --out exported/                    # TorchScript and ONNX graphs

``seqkit train`` takes Hydra's command line: overrides, -m sweeps, --config-dir for your own
config entries, --help.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import runpy
import sys
from pathlib import Path

import torch

from . import __version__, keep_freed_memory
from .data.cache import write_text
from .errors import full_traceback_wanted, one_line

BENCHES = ("data", "peers", "rnn", "translation")  # the modules of seqkit.bench


def _read_texts(args) -> list[str]:
    """Texts from the arguments or a file (one per line: a blank line is a text too, so that
    the output stays line-aligned with the input for every task)."""
    from .data.text import text_lines

    if not args.file:
        return args.texts
    return list((line.rstrip("\n") for line in sys.stdin) if args.file == "-" else
                (line for _, line in text_lines(args.file)))  # names a bad byte's line


# the flags of predict and generate: the argument of the predictor's method each one sets
PREDICT = {"--batch-size": "batch_size", "--tokenizer": "tokenizer", "--beam": "beam_size",
           "--precision": "precision"}
SHOW = {"--format": "format"}
GENERATE = {"--out": "out", "--samples": "num_samples", "--frames": "num_frames",
            "--temperature": "temperature", "--seed": "seed", "--primer": "primer",
            "--wav": "wav", "--prime": "prime", "--length": "length", "--top-k": "top_k",
            "--top-p": "top_p", "--stop": "stop"}


def _given(args, flags: dict[str, str], task: str, method) -> dict:
    """The arguments of ``method`` that the user's flags set (a flag left out is None); a
    flag that ``method`` does not take is an error, not ignored."""
    given = {flag: name for flag, name in flags.items()
             if getattr(args, flag[2:].replace("-", "_")) is not None}
    wrong = [flag for flag, name in given.items()
             if name not in inspect.signature(method).parameters]
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: not an option of a {task} model")
    return {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in given.items()}


def predict(args) -> None:
    from .inference import load

    _check_ranges(args)
    predictor = load(args.checkpoint)
    if not hasattr(predictor, "predict"):
        raise ValueError(f"{args.checkpoint} is a {predictor.task} model: use seqkit generate")
    options = _given(args, PREDICT, predictor.task, predictor.predict)
    shown = _given(args, SHOW, predictor.task, predictor.show)
    texts = _read_texts(args)
    if not texts:
        raise ValueError("no input: give texts, --file PATH or --file -")
    for row in predictor.predict(texts, **options):
        print(predictor.show(row, **shown))


def generate(args) -> None:
    from .inference import load

    _check_ranges(args)
    predictor = load(args.checkpoint)
    if not hasattr(predictor, "generate"):
        raise ValueError(f"{args.checkpoint} is a {predictor.task} model, which does not "
                         f"generate: use seqkit predict")
    options = _given(args, GENERATE, predictor.task, predictor.generate)
    if args.out is not None:
        _folder(args.out)
    for item in predictor.generate(**options):
        print(item)


RANGES = {"--samples": (lambda v: v >= 1, "at least 1"), "--frames": (lambda v: v >= 1, "at least 1"),
          "--length": (lambda v: v >= 1, "at least 1"), "--beam": (lambda v: v >= 1, "at least 1"),
          "--batch-size": (lambda v: v >= 1, "at least 1"),
          "--temperature": (lambda v: v > 0, "above 0"),
          "--top-k": (lambda v: v >= 0, "0 (all) or more"),
          "--top-p": (lambda v: 0 < v <= 1, "in (0, 1]")}


def _check_ranges(args) -> None:
    """Flags out of range are the user's to fix, before any work is done."""
    for flag, (ok, want) in RANGES.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None and not ok(value):
            raise ValueError(f"{flag} must be {want}, got {value}")


def evaluate(args) -> None:
    """Score a checkpoint on a split of the data its run was configured with (the run's
    config.yaml beside checkpoints/, with ``key=value`` overrides). Only that split is read:
    the vocabulary, labels and model come from the checkpoint."""
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from .build import build
    from .predict import load

    ckpt = Path(args.checkpoint)
    model, artifacts = load(ckpt)
    config = Path(args.config) if args.config else ckpt.resolve().parent.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no run config at {config}; pass --config RUN/config.yaml")
    cfg = OmegaConf.merge(OmegaConf.load(config), OmegaConf.from_dotlist(args.overrides))
    # the checkpoint's model, vocabularies and labels: the checkpoint is read once
    built = build(cfg, ("test" if args.split == "test" else "validate",), model=model,
                  artifacts=artifacts)
    data, task = built.data, built.task
    out = _folder(args.out or ckpt.resolve().parent.parent / f"eval-{args.split}")
    trainer = pl.Trainer(accelerator=cfg.trainer.get("accelerator", "cpu"), devices=1,
                         logger=False, enable_checkpointing=False, default_root_dir=str(out),
                         enable_model_summary=False)
    run = trainer.test if args.split == "test" else trainer.validate
    loader = data.test_dataloader() if args.split == "test" else data.val_dataloader()
    results = run(task, dataloaders=loader, verbose=False)[0]
    scores = {k: float(v) for k, v in results.items()}
    write_text(out / "scores.json", json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))


def _folder(path: str | Path) -> Path:
    """``--out`` as a folder to write into, created if missing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def gates(args) -> None:
    """Plot the gate activations and states of the model's recurrent encoder over one text."""
    from .inference import load
    from .plots import gate_activations

    predictor = load(args.checkpoint)
    layer = predictor.encoder
    if not 0 <= args.layer < layer.num_layers:
        raise ValueError(f"--layer must be in [0, {layer.num_layers}), got {args.layer}")
    if args.backward and not layer.bidirectional:
        raise ValueError("--backward: the encoder is not bidirectional")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the PNG file to write")
    traces, labels = predictor.gate_traces(args.text)
    D = 2 if layer.bidirectional else 1
    print(gate_activations(traces[args.layer * D + int(args.backward)], out, labels,
                           args.units))


def export(args) -> None:
    from .export import export as write

    manifest = write(args.checkpoint, _folder(args.out), args.format)
    for graph in manifest["graphs"].values():
        for name in graph["files"].values():
            print(Path(args.out) / name)


def data(args) -> None:
    from .data.prepare import listing, prepare

    if args.action == "prepare":
        folder = prepare(args.overrides, args.config_dir)
        print(folder if folder else "this data has no token store: each run reads its files")
        return
    for row in listing():
        if "dataset" in row:
            print(f"{row['dataset']:16} {row['present']:>11} {row['size_mb']:>9} MB  "
                  f"checksums {row['checksums']:8}  {row['path']}")
        else:
            print(f"store {row['store']:10} {row['examples']:>11} examples {row['size_mb']:>9} MB"
                  f"  {row['path']}  from {', '.join(row['inputs'])}")


def bench(args) -> None:
    module = f"seqkit.bench.{args.which}"
    sys.argv = [f"seqkit bench {args.which}", *args.args]
    runpy.run_module(module, run_name="__main__")


def _generation_options(parser: argparse.ArgumentParser) -> None:
    gen = parser.add_argument_group("sampling (music, lm)")
    gen.add_argument("--samples", type=int, default=None, help="music: pieces from scratch "
                     "(and as many continuing the primer; default 4); lm: texts (default 1)")
    gen.add_argument("--temperature", type=float, help="above 0 (default 1)")
    gen.add_argument("--seed", type=int, help="the same seed, the same samples (default 0)")
    music = parser.add_argument_group("music: pieces as MIDI and piano-roll PNG files")
    music.add_argument("--out", help="folder for the files (default: samples)")
    music.add_argument("--frames", type=int, help="frames to sample per piece (default 128)")
    music.add_argument("--primer", help="a MIDI, .npy or .npz file to continue (default: the "
                       "start of a test piece stored in the checkpoint)")
    music.add_argument("--wav", action="store_true", default=None, help="also render each MIDI file to WAV")
    lm = parser.add_argument_group("lm: text continuing a prime")
    lm.add_argument("--prime", help="the text to continue (default: a newline)")
    lm.add_argument("--length", type=int, help="tokens to sample at most (default 500)")
    lm.add_argument("--top-k", type=int, help="sample from the k likeliest (default 0: all)")
    lm.add_argument("--top-p", type=float, help="sample from the nucleus of mass p (default 1)")
    lm.add_argument("--stop", help="end a sample at this token (a character, or a word; "
                    "<eos> ends a line of a word model)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="seqkit", description=__doc__.split("\n\n")[0],
                                  epilog=__doc__.split("\n\n", 1)[1],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"seqkit {__version__}")
    top.add_argument("--debug", action="store_true", help="show the full traceback of an "
                     "error, before or after the command (also: HYDRA_FULL_ERROR=1)")
    commands = top.add_subparsers(dest="command", required=True, metavar="command")

    commands.add_parser("train", help="train a task: seqkit train task=<name> [key=value ...] "
                        "(Hydra's command line, as python train.py)", add_help=False)

    p = commands.add_parser("predict", help="classify, tag, translate or summarize text")
    p.add_argument("checkpoint")
    p.add_argument("texts", nargs="*", help="texts to classify, tag, translate or summarize")
    p.add_argument("--file", help="one text per line; '-' for stdin")
    p.add_argument("--batch-size", type=int, help="texts per batch (default 256)")
    p.add_argument("--tokenizer", choices=("simple", "whitespace"),
                   help="NER: how raw text is split into tokens (default: simple)")
    p.add_argument("--format", choices=("json", "conll"),
                   help="NER: JSON lines with entity spans (default), or CoNLL columns")
    p.add_argument("--beam", type=int, default=None, help="translation, summarization: beam "
                   "size (1: greedy; default: the test's); one line per input")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed", "16-mixed"),
                   help="translation, summarization: the products' precision (default: the "
                        "one the model was trained at)")
    p.set_defaults(run=predict)

    g = commands.add_parser("generate", help="sample music (MIDI, PNG, WAV) or text")
    g.add_argument("checkpoint")
    _generation_options(g)
    g.set_defaults(run=generate)

    e = commands.add_parser("evaluate", help="score a checkpoint on a split of its data")
    e.add_argument("checkpoint")
    e.add_argument("overrides", nargs="*", help="key=value changes to the run's config, "
                   "e.g. data.batch_size=64")
    e.add_argument("--split", choices=("val", "test"), default="test")
    e.add_argument("--config", help="the run's config.yaml (default: beside checkpoints/)")
    e.add_argument("--out", help="folder for scores.json and test outputs (default: "
                   "RUN/eval-SPLIT)")
    e.set_defaults(run=evaluate)

    t = commands.add_parser("gates", help="plot the encoder's gates and states over a text",
                            description="A heatmap of each gate (LSTM: update, forget, output; "
                            "GRU: update, reset) and state over the text, one row per unit.")
    t.add_argument("checkpoint")
    t.add_argument("text")
    t.add_argument("--out", default="gates.png", help="the PNG to write")
    t.add_argument("--layer", type=int, default=0, help="which layer of the encoder (from 0)")
    t.add_argument("--backward", action="store_true", help="a bidirectional encoder's "
                   "backward direction")
    t.add_argument("--units", type=int, default=32, help="hidden units shown")
    t.set_defaults(run=gates)

    x = commands.add_parser("export", help="write the model as TorchScript and ONNX graphs",
                            description="Export any task's model: the classifier, the tagger "
                            "with its Viterbi decoding, the seq2seq encoder and decoder step, "
                            "the language or music model's step (see seqkit.export), with its "
                            "vocabulary (artifacts.json) and an export.json naming the graphs, "
                            "files, inputs and outputs.")
    x.add_argument("checkpoint")
    x.add_argument("--out", default="exported", help="the folder to write")
    x.add_argument("--format", nargs="+", choices=("torchscript", "onnx"),
                   default=["torchscript", "onnx"])
    x.set_defaults(run=export)

    d = commands.add_parser("data", help="prepare a run's data ahead of time; list the cache",
                            description="prepare: build the token store of the data a train "
                            "command line describes (its overrides), so that every run and "
                            "process over it starts in seconds. list: each catalogued dataset "
                            "(present files, folder, size, checksums) and each prepared store.")
    d.add_argument("action", choices=("prepare", "list"))
    d.add_argument("overrides", nargs="*", help="prepare: train.py's overrides, e.g. "
                   "task=translation data=parallel_files ...")
    d.add_argument("--config-dir", help="prepare: a folder of your own config entries")
    d.set_defaults(run=data)

    b = commands.add_parser("bench", help="the benchmarks (seqkit.bench; also scripts/bench_*.py)",
                            description="Run a benchmark script; its own options follow, "
                            "e.g. seqkit bench rnn --threads 1,2 --quick")
    b.add_argument("which", choices=BENCHES)
    b.add_argument("args", nargs=argparse.REMAINDER, help="the script's options")
    b.set_defaults(run=bench)
    return top


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    keep_freed_memory()  # (train: again in the process it becomes)
    if argv[:1] == ["train"]:  # Hydra parses the rest: the process becomes `python -m
        # seqkit.train`, which is also what Lightning starts again for each DDP process
        os.execv(sys.executable, [sys.executable, "-m", "seqkit.train", *argv[1:]])
    debug = "--debug" in argv  # before or after the command
    top = parser()
    args, extra = top.parse_known_args([a for a in argv if a != "--debug"])
    if args.command in ("evaluate", "data"):  # overrides may come after the options, too
        args.overrides += [a for a in extra if "=" in a and not a.startswith("-")]
        extra = [a for a in extra if a not in args.overrides]
    if extra:
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.run(args)
    except Exception as error:  # a user's error gets one line; a bug its traceback
        message = one_line(error)
        if message is None or debug or full_traceback_wanted():
            raise
        sys.exit(f"seqkit {args.command}: error: {message}")


if __name__ == "__main__":
    main()
