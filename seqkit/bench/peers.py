"""seqkit side by side with its peers, on the same machine, in one run, alternating systems.

    seqkit bench peers crf --threads 1 2        # seqkit.layers.CRF vs pytorch-crf
    seqkit bench peers ner --threads 1 2 --epochs 3 --rounds 3 --python ~/peers/flair/bin/python
    seqkit bench peers translation --threads 1 2 --epochs 2 --rounds 3 \\
        --precision 32-true bf16-mixed --python ~/peers/onmt/bin/python

The peers are not seqkit dependencies. pytorch-crf comes with `pip install -e '.[bench]'`;
flair and OpenNMT-py each live in their own virtual environment, made by
`seqkit/bench/peer_runs/setup.sh` (pinned versions, next to the same torch), whose python ``--python``
names. Each peer trains in a subprocess running `seqkit/bench/peer_runs/<peer>.py` in that
environment, seqkit in a subprocess running `train.py`, each with OMP_NUM_THREADS set to the
thread count, one after the other, for each thread count in turn.

- ``crf``: the CRF layer alone (forward = the mean negative log-likelihood, forward+backward,
  Viterbi decoding to lists) over a grid of shapes: batch 8 and 64, longest sequence 20 and
  60 (the others drawn from half to full length), 9 and 40 tags; the same parameters in both;
  losses and paths are checked equal before anything is timed. Each figure is the median of
  4 rounds in ABBA order, each round the median of ``--repeats`` timings; the ratio's range
  over the rounds is given beside it.
- ``ner``: CoNLL-2003 (eng.train; eng.testa picks each system's best epoch; eng.testb
  scored), a word-embedding BiLSTM-CRF of the same size in both (embeddings from scratch, one
  layer, 256 hidden units, no reprojection, batch 32), the same number of epochs and one
  recipe (``ner_plan``). Both systems' test predictions are scored by the same conlleval-rule
  scorer (seqkit.metrics.span_scores).
- ``translation``: Multi30k de->en, both systems on the same joint sentencepiece pieces, the
  model of seqkit's translation config (brnn encoder, LSTM decoder with Luong general
  attention and input feeding, tied output embedding), the same batch size and number of
  steps, at each ``--precision`` (OpenNMT-py's bf16 runs inside CPU autocast); each system's
  checkpoint picked by greedy validation BLEU, test2016 translated with beam 5 (both sort the
  sentences by length and end a sentence when its best candidate ends) and scored by
  sacreBLEU on detokenized text, with its brevity penalty and length ratio.

Each system trains ``--rounds`` times per thread count, in ABBA order, with the machine's load
noted before each run; one timer for all (see REPORT_EVERY below). The tables give medians
and ranges over the rounds: training sentences/s with and without the waits for data,
prediction sentences/s, wall time, the test score, and each round's seqkit/peer ratio (above
1: seqkit is faster) and score margin. For the CRF, seqkit time / peer time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from seqkit import memory

PEER_RUNS = Path(__file__).resolve().parent / "peer_runs"  # scripts the peers run


def _median_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_crf(threads: int, args) -> list[dict]:
    """Every shape of the grid --batch x --length x --tags."""
    return [row for batch in args.batch for length in args.length for tags in args.tags
            for row in crf_shape(threads, args.repeats, batch, length, tags)]


def crf_shape(threads: int, repeats: int, batch: int, length: int, tags: int) -> list[dict]:
    from torchcrf import CRF as PeerCRF

    from seqkit.layers import crf as seqkit_crf

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    ours, peer = seqkit_crf.CRF(tags), PeerCRF(tags, batch_first=True)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(ours, name).copy_(torch.randn(getattr(peer, name).shape, generator=gen))
            getattr(peer, name).copy_(getattr(ours, name))
    emissions = torch.randn(batch, length, tags, generator=gen, requires_grad=True)
    labels = torch.randint(0, tags, (batch, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen)
    lengths[0] = length
    mask = torch.arange(length) < lengths[:, None]

    def ours_loss():
        return ours.nll(emissions, labels, mask)

    def peer_loss():
        return -peer(emissions, labels, mask, reduction="mean")

    torch.testing.assert_close(ours_loss(), peer_loss(), rtol=1e-5, atol=1e-4)
    assert ours.decode(emissions, mask) == peer.decode(emissions, mask)

    def backward(loss_fn):
        def run():
            emissions.grad = None
            loss_fn().backward()
        return run

    cases = {"forward": (lambda: ours_loss(), lambda: peer_loss()),
             "forward+backward": (backward(ours_loss), backward(peer_loss)),
             "viterbi": (lambda: ours.decode(emissions, mask),
                         lambda: peer.decode(emissions, mask))}
    rows = []
    for op, (ours_fn, peer_fn) in cases.items():
        with torch.no_grad() if op != "forward+backward" else torch.enable_grad():
            ours_ms, peer_ms = [], []
            for turn in range(4):  # ABBA rounds: a load change hits both systems
                pair = [(ours_ms, ours_fn), (peer_ms, peer_fn)]
                for times, fn in pair if turn in (0, 3) else pair[::-1]:
                    times.append(_median_ms(fn, repeats))
        a, b = statistics.median(ours_ms), statistics.median(peer_ms)
        ratios = [x / y for x, y in zip(ours_ms, peer_ms)]
        rows.append({"bench": "crf", "op": op, "threads": threads, "batch": batch,
                     "length": length, "tags": tags, "seqkit_ms": round(a, 3),
                     "pytorch_crf_ms": round(b, 3), "ratio": round(a / b, 3),
                     "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)]})
    return rows


# -- whole trainings: seqkit's train.py and a peer, each in its own process --------------------
# One timer on every side. Training time: the training epochs, from each one's start to its
# end: batches fetched (each system's own data pipeline), forward, backward, optimizer step,
# and a progress line every REPORT_EVERY steps (flair: every tenth of an epoch). Left out on
# every side: a sanity check (switched off in seqkit; the peers have none), validation or dev
# scoring, checkpoint saves, the test. Each side also reports data_s, the part of its training
# time spent waiting for the next batch, so the ratio without the data pipelines reads too.
# Sentences and tokens are counted from the batches each side trained on.
REPORT_EVERY = 50
SEQKIT_TIMING = ["trainer.num_sanity_val_steps=0", f"trainer.log_every_n_steps={REPORT_EVERY}",
                 "logger=csv"]


def _run(cmd: list[str], threads: int, log: Path) -> float:
    """Run ``cmd`` with ``threads`` threads into the folder ``log`` names without its suffix,
    its output to ``log``; its wall seconds, also written beside the log when it succeeds. A
    run whose wall seconds are there already is not run again, so the same command resumes an
    interrupted bench with its finished runs; an unfinished run's folder is cleared first."""
    finished = log.with_suffix(".wall_s")
    if finished.exists():
        print(f"  {log.stem}: finished before ({finished}), not run again", flush=True)
        return float(finished.read_text())
    folder = log.with_suffix("")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1", **memory.ENVIRONMENT}  # every side keeps freed memory, as
    # seqkit's own commands do (seqkit.memory)
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{cmd[0]} {cmd[1]} failed (status {done.returncode}); see {log}")
    wall = time.perf_counter() - start
    finished.write_text(f"{wall}\n")
    return wall


def seqkit_train(overrides: list[str], out: Path, threads: int) -> dict:
    """``seqkit train OVERRIDES`` (``python -m seqkit.train``) into ``out``: wall time,
    training and data seconds, sentences and tokens over the training epochs (metrics.csv),
    and the checkpoint it tested."""
    wall = _run([sys.executable, "-m", "seqkit.train", *overrides, f"hydra.run.dir={out}"],
                threads, out.with_suffix(".log"))
    with open(out / "csv" / "metrics.csv") as f:
        epochs = [r for r in csv.DictReader(f) if r.get("train/epoch_s")]
    seconds = [float(r["train/epoch_s"]) for r in epochs]
    results = json.loads((out / "results.json").read_text())
    return {"wall_s": wall, "train_s": sum(seconds), "epochs": len(seconds),
            "data_s": sum(float(r["train/data_s"]) for r in epochs),
            "sentences": sum(float(r["train/examples_per_s"]) * s
                             for r, s in zip(epochs, seconds)),
            "tokens": sum(float(r["train/tokens_per_s"]) * s for r, s in zip(epochs, seconds)),
            "checkpoint": results["checkpoint"], "results": results}


def peer_command(python: str, script: str, options: dict, out: Path, threads: int) -> list[str]:
    return [python, str(PEER_RUNS / script), "--out", str(out), "--threads", str(threads),
            *(f"--{k.replace('_', '-')}={v}" for k, v in options.items())]


def _peer(python: str, script: str, options: dict, out: Path, threads: int) -> dict:
    """Run ``peer_runs/SCRIPT`` under the peer's ``python``; it writes out/result.json."""
    wall = _run(peer_command(python, script, options, out, threads), threads,
                out.with_suffix(".log"))
    return {**json.loads((out / "result.json").read_text()), "wall_s": wall}


def _speeds(row: dict, units: int) -> dict:
    row["sentences_per_s"] = row["sentences"] / row["train_s"]
    row["compute_sentences_per_s"] = row["sentences"] / (row["train_s"] - row["data_s"])
    row["tokens_per_s"] = row["tokens"] / row["train_s"]
    row["predict_per_s"] = units / row["predict_s"]
    return row


def abba(pairs: list[tuple], repeats: int):
    """Each pair's two runs, ``repeats`` rounds, the order turned round every round (A B, B A,
    A B, ...), so that a drift in the machine's load falls on both sides alike."""
    for turn in range(repeats):
        for pair in pairs:
            for system in pair if turn % 2 == 0 else pair[::-1]:
                yield turn, system


# -- NER ---------------------------------------------------------------------------------------
def ner_data(folder: Path) -> list[list[str]]:
    """CoNLL-2003 in IOB2 as the peer reads it (token and tag columns, no -DOCSTART-) in
    ``folder``; returns the test sentences' gold tags."""
    from seqkit.data.conll import load_ner

    splits = load_ner("conll2003", "IOB2")
    folder.mkdir(parents=True, exist_ok=True)
    for split, sentences in splits.items():
        lines = ["\n".join(f"{w} {t}" for w, t in zip(s.tokens, s.tags)) + "\n" for s in
                 sentences]
        (folder / f"{split}.txt").write_text("\n".join(lines))
    return splits["test"]


def seqkit_tag(model, artifacts: dict, sentences, threads: int,
               batch: int) -> tuple[list, float]:
    """IOB2 tags of ``sentences`` from a tagger, in batches of ``batch`` sentences of
    similar length, and the seconds it took (words to tags and spans, as ``seqkit predict``)."""
    from seqkit.data.conll import convert_tags
    from seqkit.predict import tag

    torch.set_num_threads(threads)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].tokens))
    texts = [" ".join(sentences[i].tokens) for i in order]
    start = time.perf_counter()
    rows = [r for i in range(0, len(texts), batch)
            for r in tag(model, artifacts, texts[i:i + batch], tokenizer="whitespace")]
    seconds = time.perf_counter() - start
    tags = [None] * len(sentences)
    for i, r in zip(order, rows):
        tags[i] = convert_tags(r["tags"], artifacts["scheme"], "IOB2")
    return tags, seconds


def ner_plan(args, work: Path) -> dict:
    """What each side receives: the same model sizes, batch, epochs and recipe (seqkit's
    NER recipe: Adam, its learning rate, gradient norm 1, dropout 0.5, word dropout 0.05, the
    learning rate halved after ``plateau`` epochs without a better dev F1, the best dev epoch
    tested; no early stop)."""
    recipe = {"lr": 0.002, "clip": 1.0, "dropout": 0.5, "word_dropout": 0.05, "patience": 2}
    return {"seqkit": [
        "task=ner", *SEQKIT_TIMING, "model.char_encoder=null", "model.case_dim=0",
        f"model.word_dim={args.embed}", "model.encoder.hidden_size=256",
        f"model.dropout={recipe['dropout']}", f"model.word_dropout={recipe['word_dropout']}",
        f"module.optimizer.lr={recipe['lr']}", f"trainer.gradient_clip_val={recipe['clip']}",
        f"plateau_patience={recipe['patience']}", "optimizer=adam",
        f"data.min_freq={args.min_freq}", "data.batch_size=32",
        f"trainer.max_epochs={args.epochs}", f"callbacks.early_stopping.patience={args.epochs}"],
        "flair": {"data": work / "conll2003-iob2", "min_freq": args.min_freq, "embed": args.embed,
                  "hidden": 256, "batch": 32, "epochs": args.epochs, "optimizer": "adam",
                  "dev": 1, **recipe}}


def bench_ner(threads: int, args) -> list[dict]:
    from seqkit.metrics.spans import span_scores

    work = Path(args.work)
    test = ner_data(work / "conll2003-iob2")
    gold = [s.tags for s in test]
    plan = ner_plan(args, work)
    rows = []
    for turn, system in abba([("seqkit", "flair")], args.rounds):
        out = work / f"ner-{system}-{threads}t-{turn}"
        load = os.getloadavg()[0]
        if system == "seqkit":
            row = seqkit_train([*plan["seqkit"], f"seed={turn}"], out, threads)
            model, artifacts = _load(row)
            row["tags"], row["predict_s"] = seqkit_tag(model, artifacts, test, threads, 32)
        else:
            row = _peer(args.python, "flair_ner.py", {**plan["flair"], "seed": turn}, out,
                        threads)
        row.update(system=system, threads=threads, round=turn, load=load,
                   f1=100 * span_scores(gold, row.pop("tags"), "IOB2")["f1"])
        rows.append(_speeds(row, len(test)))
        print(f"  {system}: {_summary(row)}", flush=True)
    return rows


def _load(row: dict):
    """The tested checkpoint's model and artifacts; counts its parameters into ``row``."""
    from seqkit.predict import load

    model, artifacts = load(row["checkpoint"])
    row["params"] = sum(p.numel() for p in model.parameters())
    return model, artifacts


def _summary(row: dict) -> str:
    return (f"round {row['round']}, load {row['load']:.2f}: {row['train_s']:.0f} s training "
            f"({row['data_s']:.1f} s waiting for data), {row['sentences_per_s']:.1f} "
            f"sentences/s, score {row.get('f1', row.get('bleu')):.2f}, "
            f"wall {row['wall_s']:.0f} s")


# -- translation -------------------------------------------------------------------------------
def translation_data(folder: Path) -> dict:
    """The pieces of seqkit's translation data (its joint sentencepiece model, learnt on the
    training split; long pairs left out as seqkit leaves them out) for the peer, in
    ``folder``: train.src, train.tgt, val.src, test.src, vocab.txt (the pieces but the four
    control symbols). Returns the subword model, the test sources, the validation and test
    references and the training batches per epoch."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from seqkit.train import CONFIGS

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        data = instantiate(compose("train", overrides=["task=translation"]).data)
    data.setup("fit")
    data.setup("test")
    words = data.tokenizer
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, rows) -> None:
        (folder / name).write_text("".join(" ".join(r) + "\n" for r in rows), encoding="utf-8")
    train = data.splits["train"]
    pairs = [train[i] for i in range(len(train))]
    write("train.src", (words.src_pieces(src) for _, src, _, _ in pairs))
    write("train.tgt", (words.tgt_pieces(tgt) for _, _, tgt, _ in pairs))
    found = {"words": words, "batches": len(data.train_dataloader())}
    for split in ("val", "test"):
        items = sorted(data.splits[split], key=lambda item: item[0])  # the file's order
        write(f"{split}.src", (words.src_pieces(src) for _, src, _, _ in items))
        found[f"{split}_sources"] = [words.src.decode(src) for _, src, _, _ in items]
        found[f"{split}_refs"] = [ref for *_, ref in items]
    write("vocab.txt", ([words.src.id_to_piece(i), "1"]
                        for i in range(4, words.src.get_piece_size())))
    return found


def seqkit_translate(model, artifacts: dict, texts: list[str], threads: int,
                     batch: int) -> tuple[list[str], float]:
    """Beam-5 translations of ``texts`` by a seq2seq model (as ``seqkit predict``: sorted by
    length, in batches of ``batch``, at the precision it trained at), with OpenNMT-py's
    stopping rule (a sentence ends when its best candidate ends), and the seconds they took;
    imports happen before the clock starts, as OpenNMT's translation time leaves its own
    out."""
    from seqkit.predict import transduce

    torch.set_num_threads(threads)
    transduce(model, artifacts, [])  # imports what it needs, decodes nothing
    start = time.perf_counter()
    hyps = transduce(model, artifacts, texts, beam_size=5, batch_size=batch, stop="top")
    return hyps, time.perf_counter() - start


PRECISIONS = {"32-true": "32", "bf16-mixed": "bf16"}  # seqkit's Lightning precision: OpenNMT's


def translation_plan(args, work: Path, batches: int) -> dict:
    """What each side receives, per seqkit precision: the same batch, the same steps (seqkit's
    epochs), a checkpoint per epoch; seqkit picks its checkpoint by validation BLEU
    (greedy), and so does the bench for OpenNMT's, from each checkpoint's greedy translation
    of the same validation set; the test translates with beam 5, GNMT length penalty 0.6. The
    learning rate stays constant in both (OpenNMT-py has no plateau schedule like seqkit's)."""
    return {precision: {
        "seqkit": ["task=translation", *SEQKIT_TIMING, "scheduler=none",
                   f"trainer.max_epochs={args.epochs}",
                   f"callbacks.early_stopping.patience={args.epochs}",
                   f"trainer.precision={precision}"],
        "onmt": {"data": work / "multi30k-pieces", "steps": batches * args.epochs,
                 "batch": 64, "save_every": batches, "report_every": REPORT_EVERY,
                 "val": 1, "precision": PRECISIONS[precision]}}
        for precision in args.precision}


def bench_translation(threads: int, args) -> list[dict]:
    from sacrebleu.metrics import BLEU

    work = Path(args.work)
    data = translation_data(work / "multi30k-pieces")
    words, refs = data["words"], data["test_refs"]
    plan = translation_plan(args, work, data["batches"])

    def bleu(pieces: list[str], references: list[str]):
        ids = [[words.tgt.piece_to_id(p) for p in line.split()] for line in pieces]
        return BLEU().corpus_score(words.decode_tgt(ids), [references])

    rows = []
    pairs = [((precision, "seqkit"), (precision, "onmt")) for precision in args.precision]
    for turn, (precision, system) in abba(pairs, args.rounds):
        name = system if precision == "32-true" else f"{system} {precision}"
        out = work / f"translation-{name.replace(' ', '-')}-{threads}t-{turn}"
        load = os.getloadavg()[0]
        if system == "seqkit":
            row = seqkit_train([*plan[precision]["seqkit"], f"seed={turn}"], out, threads)
            model, artifacts = _load(row)
            hyps, row["predict_s"] = seqkit_translate(model, artifacts, data["test_sources"],
                                                      threads, 64)
            score = BLEU().corpus_score(hyps, [refs])
        else:
            row = _peer(args.python, "onmt_translation.py",
                        {**plan[precision]["onmt"], "seed": turn}, out, threads)
            best = max(row.pop("checkpoints"),
                       key=lambda c: bleu(c["val"], data["val_refs"]).score)
            row.update(checkpoint=best["step"], predict_s=best["predict_s"])
            score = bleu(best["test"], refs)
        row.update(system=name, threads=threads, round=turn, load=load, bleu=score.score,
                   bp=score.bp, length_ratio=score.sys_len / score.ref_len)
        rows.append(_speeds(row, len(refs)))
        print(f"  {name}: {_summary(row)}", flush=True)
    return rows


# -- report ------------------------------------------------------------------------------------
def table(rows: list[dict], which: str) -> str:
    if which == "crf":
        lines = ["| op | threads | B | L | tags | seqkit ms | pytorch-crf ms | "
                 "seqkit/peer time (range over 4 rounds) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['op']} | {r['threads']} | {r['batch']} | {r['length']} | {r['tags']} "
                  f"| {r['seqkit_ms']} | {r['pytorch_crf_ms']} | {r['ratio']} "
                  f"({r['ratio_range'][0]}-{r['ratio_range'][1]}) |" for r in rows]
        return "\n".join(lines)
    return "\n\n".join([speed_table(rows), quality_table(rows, which)])


def _spread(values: list[float], digits: int = 1) -> str:
    """The median and, over more than one value, the range."""
    median = f"{statistics.median(values):,.{digits}f}"
    if len(values) < 2:
        return median
    low, high = (f"{v:,.{digits}f}" for v in (min(values), max(values)))
    return f"{median} ({low} to {high})" if min(values) < 0 else f"{median} ({low}-{high})"


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by (system, threads), in the order they first ran."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["system"], r["threads"]), []).append(r)
    return groups


def _pairs(rows: list[dict]):
    """(seqkit system, threads, [(seqkit row, peer row) of each round])."""
    groups = _groups(rows)
    for (system, threads), mine in groups.items():
        if system.startswith("seqkit"):
            peer = next(g for (s, t), g in groups.items() if t == threads and
                        not s.startswith("seqkit") and s.split(" ")[1:] == system.split(" ")[1:])
            by_round = {r["round"]: r for r in peer}
            yield system, threads, [(r, by_round[r["round"]]) for r in mine]


def speed_table(rows: list[dict]) -> str:
    """Medians and ranges over the rounds of each system's speeds, then of the ratios of the
    rounds' pairs (above 1: seqkit is faster)."""
    lines = ["| system | threads | rounds | load | training sentences/s | without data waits "
             "| data waits % | predict sentences/s | wall s |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (system, threads), group in _groups(rows).items():
        def values(key):
            return [r[key] for r in group]
        waits = [100 * r["data_s"] / r["train_s"] for r in group]
        lines.append(f"| {system} | {threads} | {len(group)} | "
                     f"{min(values('load')):.2f}-{max(values('load')):.2f} | "
                     f"{_spread(values('sentences_per_s'))} | "
                     f"{_spread(values('compute_sentences_per_s'))} | {_spread(waits)} | "
                     f"{_spread(values('predict_per_s'))} | {_spread(values('wall_s'), 0)} |")
    lines += ["", "| system | threads | training seqkit/peer | without data waits | "
              "predict seqkit/peer |", "|---|---:|---:|---:|---:|"]
    for system, threads, pairs in _pairs(rows):
        def ratio(key):
            return _spread([a[key] / b[key] for a, b in pairs], 2)
        lines.append(f"| {system} | {threads} | {ratio('sentences_per_s')} | "
                     f"{ratio('compute_sentences_per_s')} | {ratio('predict_per_s')} |")
    return "\n".join(lines)


def quality_table(rows: list[dict], which: str) -> str:
    """Each system's test score (median and range over the rounds), then seqkit's margin."""
    key = "f1" if which == "ner" else "bleu"
    extra = [] if which == "ner" else ["bp", "length_ratio"]
    lines = [f"| system | threads | parameters | test {key} |" + "".join(f" {e} |" for e in extra),
             "|---|---:|---:|---:|" + "---:|" * len(extra)]
    for (system, threads), group in _groups(rows).items():
        lines.append(f"| {system} | {threads} | {group[0]['params']:,} | "
                     f"{_spread([r[key] for r in group], 2)} |"
                     + "".join(f" {_spread([r[e] for r in group], 3)} |" for e in extra))
    lines += ["", f"| system | threads | {key} seqkit - peer |", "|---|---:|---:|"]
    for system, threads, pairs in _pairs(rows):
        lines.append(f"| {system} | {threads} | "
                     f"{_spread([a[key] - b[key] for a, b in pairs], 2)} |")
    return "\n".join(lines)


BENCHES = {"crf": bench_crf, "ner": bench_ner, "translation": bench_translation}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=list(BENCHES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=50, help="crf: timings per figure")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 64], help="crf: batch sizes")
    parser.add_argument("--length", type=int, nargs="+", default=[20, 60],
                        help="crf: longest sequence (the others half to full length)")
    parser.add_argument("--tags", type=int, nargs="+", default=[9, 40], help="crf: tag counts")
    parser.add_argument("--python", help="ner, translation: the peer environment's python")
    parser.add_argument("--rounds", type=int, default=3,
                        help="ner, translation: runs of each system per thread count, in ABBA "
                             "order")
    parser.add_argument("--epochs", type=int, default=3,
                        help="ner, translation: seqkit's training epochs (the peer trains as "
                             "many epochs or, for translation, as many steps)")
    parser.add_argument("--embed", type=int, default=300, help="ner: word embedding size")
    parser.add_argument("--min-freq", type=int, default=3,
                        help="ner: a word needs this many training occurrences for an embedding")
    parser.add_argument("--precision", nargs="+", default=["32-true"], choices=list(PRECISIONS),
                        help="translation: seqkit trains once per Lightning precision "
                             "(bf16-mixed: bfloat16 products on CPUs that have them)")
    parser.add_argument("--work", default="bench-peers", help="run folders and data go here")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.which != "crf" and not args.python:
        parser.error(f"{args.which} needs --python, the peer environment's interpreter "
                     f"(seqkit/bench/peer_runs/setup.sh makes it)")
    memory.keep_freed_memory()  # the crf's timings in this process: both sides
    load = os.getloadavg()[0]
    print(f"machine load (1-min average) at the start: {load:.2f}; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs", flush=True)
    rows = []
    for threads in args.threads:
        print(f"{args.which}, {threads} thread(s):", flush=True)
        rows += BENCHES[args.which](threads, args)
    print(f"machine load (1-min average) at the end: {os.getloadavg()[0]:.2f}")
    print(table(rows, args.which))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
