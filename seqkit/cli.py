"""seqkit: train a model and use it. `seqkit <command> --help` for each.

    seqkit train task=sentiment                           # = python train.py ... (Hydra)
    seqkit predict CKPT "a gripping film"                 # classify, tag, translate, summarize
    seqkit predict CKPT --file news.txt --format conll    # one text per line; '-' reads stdin
    seqkit predict MT_CKPT --file test.de --beam 5 > test.hyp.en
    seqkit generate MUSIC_CKPT --out samples/ --samples 4 --frames 128 --primer a.mid --wav
    seqkit generate LM_CKPT --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95
    seqkit evaluate CKPT --split test                     # on the data it was trained with
    seqkit bench rnn --quick                              # the backend benchmarks
    seqkit gates CKPT "a gripping film" --out gates.png   # the encoder's gates over a text
    seqkit export CKPT --out exported/                    # TorchScript and ONNX graphs

``seqkit train`` takes Hydra's command line: overrides, -m sweeps, --config-dir for your own
config entries, --help.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from pathlib import Path

import torch

from . import __version__
from .data.cache import write_text
from .errors import full_traceback_wanted, one_line

BENCHES = ("peers", "rnn", "translation")  # the modules of seqkit.bench
GENERATIVE = ("music", "lm")


def _read_texts(args) -> list[str]:
    """Texts from the arguments or a file (one per line: a blank line is a text too, so that
    the output stays line-aligned with the input for every task)."""
    from .data.text import text_lines

    if not args.file:
        return args.texts
    return list((line.rstrip("\n") for line in sys.stdin) if args.file == "-" else
                (line for _, line in text_lines(args.file)))  # names a bad byte's line


def predict(args) -> None:
    from .predict import classify, load, tag, transduce

    model, artifacts = load(args.checkpoint)
    task = artifacts.get("task")
    if task in GENERATIVE:
        raise ValueError(f"{args.checkpoint} is a {task} model: use seqkit generate")
    seq2seq = task in ("translation", "summarization")
    texts = _read_texts(args)
    if not texts:
        raise ValueError("no input: give texts, --file PATH or --file -")
    if seq2seq:  # all at once: batches of similar lengths
        for line in transduce(model, artifacts, texts, args.beam, args.batch_size,
                              args.precision):
            print(line)
        return
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start:start + args.batch_size]
        if task == "ner":
            for row in tag(model, artifacts, chunk, args.tokenizer):
                if args.format == "conll":
                    print("".join(f"{w} {t}\n" for w, t in zip(row["tokens"], row["tags"])))
                else:
                    print(json.dumps(row, ensure_ascii=False))
        else:
            for row in classify(model, artifacts, chunk):
                print(json.dumps(row, ensure_ascii=False))


def generate(args) -> None:
    from .predict import load

    _check_ranges(args)
    model, artifacts = load(args.checkpoint)
    task = artifacts.get("task")
    if task == "music":
        from .data.music import read_rolls
        from .tasks.music import write_samples

        primer = (torch.from_numpy(read_rolls(args.primer, artifacts["fs"])[0]).float()
                  if args.primer else None)
        for path in write_samples(model, artifacts, _folder(args.out), args.samples or 4,
                                  args.frames, args.temperature, args.seed, primer, args.wav):
            print(path)
    elif task == "lm":
        from .tasks.lm import generate_text

        for text in generate_text(model, artifacts, args.prime, args.length, args.samples or 1,
                                  args.stop, args.seed, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p):
            print(text)
    else:
        raise ValueError(f"{args.checkpoint} is a {task} model, which does not generate: "
                         f"use seqkit predict")


def _check_ranges(args) -> None:
    """Sampling flags out of range are the user's to fix, before any work is done."""
    checks = {"--samples": (args.samples, lambda v: v is None or v >= 1, "at least 1"),
              "--frames": (args.frames, lambda v: v >= 1, "at least 1"),
              "--length": (args.length, lambda v: v >= 1, "at least 1"),
              "--temperature": (args.temperature, lambda v: v > 0, "above 0"),
              "--top-k": (args.top_k, lambda v: v >= 0, "0 (all) or more"),
              "--top-p": (args.top_p, lambda v: 0 < v <= 1, "in (0, 1]")}
    for flag, (value, ok, want) in checks.items():
        if not ok(value):
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
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    from .data.text import tokenize
    from .layers import Recurrent, gate_trace
    from .plots import gate_activations
    from .predict import classify, load, tag, transduce

    model, artifacts = load(args.checkpoint)
    task = artifacts.get("task")
    layer = getattr(model, "encoder", None) or getattr(model, "rnn", None)
    if task == "music" or not isinstance(layer, Recurrent):
        raise ValueError(f"{args.checkpoint}: a {task} model takes no text to trace")
    if not 0 <= args.layer < layer.num_layers:
        raise ValueError(f"--layer must be in [0, {layer.num_layers}), got {args.layer}")
    inputs = []
    hook = layer.register_forward_pre_hook(lambda m, a, kw: inputs.append(a[0]),
                                           with_kwargs=True)
    try:
        if task == "lm":
            from .data.lm import tokens
            from .data.vocab import Vocab

            labels = tokens(args.text, artifacts["level"],
                            artifacts.get("tokenizer", "whitespace"))
            if not labels:
                raise ValueError("no tokens in the text")
            vocab = Vocab.from_state_dict(artifacts["vocab"])
            with torch.no_grad():
                model(torch.tensor([vocab.encode(labels)], dtype=torch.long))
        elif task == "ner":
            labels = tag(model, artifacts, [args.text])[0]["tokens"]
        elif task in ("translation", "summarization"):
            transduce(model, artifacts, [args.text], beam_size=1)
            labels = None  # the encoder reads subword or word ids: steps are numbered
        else:
            classify(model, artifacts, [args.text])
            labels = tokenize(args.text, artifacts.get("lower", True),
                              artifacts.get("tokenizer", "whitespace"))
    finally:
        hook.remove()
    x = inputs[0]
    if isinstance(x, PackedSequence):
        x = pad_packed_sequence(x, batch_first=layer.batch_first)[0]
    sequence = x[0] if layer.batch_first else x[:, 0]
    traces = gate_trace(layer, sequence[:len(labels)] if labels else sequence)
    D = 2 if layer.bidirectional else 1
    direction = 1 if args.backward else 0
    if direction >= D:
        raise ValueError("--backward: the encoder is not bidirectional")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the PNG file to write")
    print(gate_activations(traces[args.layer * D + direction], out, labels, args.units))


def export(args) -> None:
    from .export import export as write

    manifest = write(args.checkpoint, _folder(args.out), args.format)
    for graph in manifest["graphs"].values():
        for name in graph["files"].values():
            print(Path(args.out) / name)


def bench(args) -> None:
    module = f"seqkit.bench.{args.which}"
    sys.argv = [f"seqkit bench {args.which}", *args.args]
    runpy.run_module(module, run_name="__main__")


def _generation_options(parser: argparse.ArgumentParser) -> None:
    gen = parser.add_argument_group("sampling (music, lm)")
    gen.add_argument("--samples", type=int, default=None, help="music: pieces from scratch "
                     "(and as many continuing the primer; default 4); lm: texts (default 1)")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0, help="the same seed, the same samples")
    music = parser.add_argument_group("music: pieces as MIDI and piano-roll PNG files")
    music.add_argument("--out", default="samples", help="folder for the files")
    music.add_argument("--frames", type=int, default=128, help="frames to sample per piece")
    music.add_argument("--primer", help="a MIDI, .npy or .npz file to continue (default: the "
                       "start of a test piece stored in the checkpoint)")
    music.add_argument("--wav", action="store_true", help="also render each MIDI file to WAV")
    lm = parser.add_argument_group("lm: text continuing a prime")
    lm.add_argument("--prime", default="\n", help="the text to continue (default: a newline)")
    lm.add_argument("--length", type=int, default=500, help="tokens to sample at most")
    lm.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0: all)")
    lm.add_argument("--top-p", type=float, default=1.0, help="sample from the nucleus of mass p")
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
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tokenizer", choices=("simple", "whitespace"), default="simple",
                   help="NER: how raw text is split into tokens")
    p.add_argument("--format", choices=("json", "conll"), default="json",
                   help="NER: JSON lines with entity spans, or CoNLL columns")
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

    b = commands.add_parser("bench", help="the benchmarks (seqkit.bench; also scripts/bench_*.py)",
                            description="Run a benchmark script; its own options follow, "
                            "e.g. seqkit bench rnn --threads 1,2 --quick")
    b.add_argument("which", choices=BENCHES)
    b.add_argument("args", nargs=argparse.REMAINDER, help="the script's options")
    b.set_defaults(run=bench)
    return top


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # Hydra parses the rest: the process becomes `python -m
        # seqkit.train`, which is also what Lightning starts again for each DDP process
        os.execv(sys.executable, [sys.executable, "-m", "seqkit.train", *argv[1:]])
    debug = "--debug" in argv  # before or after the command
    top = parser()
    args, extra = top.parse_known_args([a for a in argv if a != "--debug"])
    if args.command == "evaluate":  # overrides may come after the options, too
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
