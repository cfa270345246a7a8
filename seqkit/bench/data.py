"""Benchmark the data path as corpora grow: synthetic parallel corpora of each size, made from
Multi30k's training pairs, trained on with the translation task's shipped config, and texts of
each size made from Tiny Shakespeare, trained on by the character-level language model.

For each size it prints the prepare time (``seqkit data prepare``: the subword model and the
token store, from a cold cache), the cache-hit start (a new process: config to first batch),
the peak RSS of a training process over its first ``--steps`` steps (VmHWM), its target
tokens/s, and the proportional set size (PSS, /proc/PID/smaps_rollup) of the process; with
``--ddp``, the summed PSS of two DDP processes (gloo), started afresh (torchrun, ``trainer=ddp``)
and forked from one that has built the data and the model (``trainer=ddp_fork``; the
parent's PSS is in the sum). PSS splits a page that several processes map between them, so
a page shared through the page cache or copy-on-write counts once in the sum. The token
store's own mappings' RSS and PSS (/proc/PID/smaps) are in the JSON rows.

Run:  SEQKIT_DATA=../shared/data seqkit bench data --pairs 30000 300000 3000000 --ddp \
          --text-mb 28 280
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from seqkit.data.cache import dataset_file

# a training process: BUILD composes the config and builds the data and the model, TRAIN
# trains --steps steps and prints one JSON line. A forked job runs BUILD once, before the fork.
BUILD = """
import json, os, sys, time, torch
start = time.perf_counter()
from hydra import compose, initialize_config_dir
from seqkit.build import build
from seqkit.train import CONFIGS
world, steps, overrides = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
torch.set_num_threads(1)
with initialize_config_dir(str(CONFIGS), version_base="1.3"):
    cfg = compose("train", overrides=overrides)
torch.manual_seed(cfg.seed)
built = build(cfg)
data, model, task = built.data, built.model, built.task
"""
TRAIN = """
rank = int(sys.argv[1])
if world > 1:
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         init_method="tcp://127.0.0.1:29517")
data.trainer = type("T", (), {"global_rank": rank, "world_size": world, "current_epoch": 0})()
batches = iter(data.train_dataloader())
batch = next(batches)
ready = time.perf_counter() - start
optimizer = task.optimizer(params=model.parameters())
tokens, t0 = 0, time.perf_counter()
for step in range(steps):
    if hasattr(task, "_loss"):  # translation
        loss, _, n = task._loss(batch)
    else:  # the language model, its state carried from batch to batch
        n = batch["targets"].numel()
        loss = task._forward(batch, "train") / n
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for p in model.parameters() if world > 1 else ():  # what DDP does: average the gradients
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world
    optimizer.step()
    tokens += n
    batch = next(batches)
rate = tokens / (time.perf_counter() - t0)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
store = {"Rss:": 0, "Pss:": 0}  # the mappings of token store files, of all of them
mapped = False
for line in open("/proc/self/smaps"):
    fields = line.split()
    if "-" in fields[0] and len(fields[0]) > 8 and not fields[0].endswith(":"):
        mapped = len(fields) > 5 and "/stores/" in fields[5]
    elif mapped and fields[0] in store:
        store[fields[0]] += int(fields[1])
print(json.dumps({"start_s": ready, "tokens_per_s": rate,
                  "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
                  "store_rss_mb": store["Rss:"] / 1024, "store_pss_mb": store["Pss:"] / 1024}),
      flush=True)
sys.stdin.read()  # alive until the launcher has read the PSS of every process at once
"""


# a launcher process: launch() in a fresh interpreter, its environment the run's. This module
# imports torch only inside functions: a launcher of fresh processes that mapped torch's
# libraries would take a share of their pages out of its children's PSS.
LAUNCH = ("import sys; from seqkit.bench.data import launch; "
          "launch(int(sys.argv[1]), int(sys.argv[2]), sys.argv[4:], sys.argv[3] == 'fork')")


def pss_mb(pid: int | str = "self") -> float:
    """A process's proportional set size, MB: each page it maps counted as one over the number
    of processes that map it."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024


def launch(world: int, steps: int, overrides: list[str], fork: bool) -> None:
    """Train ``world`` processes, started afresh (as torchrun and ``trainer=ddp`` start them)
    or forked from this one once it has built the data and the model and frozen the garbage
    collector's objects (as ``trainer=ddp_fork`` does). When all have trained, read
    the PSS of every process of the job at one moment (this one's too when they are its
    forks: it holds the pages they share) and print their rows and the sum as a JSON line."""
    built = {"__name__": "__main__"}
    if fork:
        sys.argv = ["-c", "0", str(world), str(steps), *overrides]
        exec(BUILD, built)
        gc.collect()
        gc.freeze()
    pids, outs, holds = [], [], []
    for rank in range(world):
        argv = [str(rank), str(world), str(steps), *overrides]
        if not fork:
            child = subprocess.Popen([sys.executable, "-c", BUILD + TRAIN, *argv], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            pids.append(child.pid)
            outs.append(child.stdout)
            holds.append(child.stdin)
            continue
        out_r, out_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: stdout and stdin to its pipes, the others' ends closed
            os.dup2(out_w, 1)
            os.dup2(hold_r, 0)
            for fd in (out_r, out_w, hold_r, hold_w, *(h.fileno() for h in holds)):
                os.close(fd)
            sys.argv, code = ["-c", *argv], 1
            try:
                exec(TRAIN, built)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                os._exit(code)
        os.close(out_w)
        os.close(hold_r)
        pids.append(pid)
        outs.append(os.fdopen(out_r))
        holds.append(os.fdopen(hold_w, "w"))
    lines = [out.readline() for out in outs]
    if not all(lines):
        raise RuntimeError("a training process failed (its error is above)")
    pss = [pss_mb(pid) for pid in pids] + ([pss_mb()] if fork else [])
    for hold in holds:
        hold.close()
    if any(os.waitpid(pid, 0)[1] for pid in pids):
        raise RuntimeError("a training process failed (its error is above)")
    print(json.dumps({"rows": [json.loads(line) for line in lines], "pss_each_mb": pss,
                      "pss_mb": sum(pss)}))


def corpus(folder: Path, pairs: int, seed: int = 0) -> list[Path]:
    """``pairs`` aligned pairs from Multi30k's training split, cycled, each copy's words
    shuffled within the sentence (so that the corpus is not 29,000 pairs repeated)."""
    from seqkit.data.parallel import multi30k_files, read_aligned
    base = read_aligned(*multi30k_files("train"))
    files = [folder / f"train-{pairs}.{side}" for side in ("de", "en")]
    if all(f.is_file() for f in files):
        return files
    rng = random.Random(seed)
    with open(files[0], "w") as de, open(files[1], "w") as en:
        for i in range(pairs):
            src, tgt = base[i % len(base)]
            if i >= len(base):
                src, tgt = (" ".join(rng.sample(s.split(), len(s.split()))) for s in (src, tgt))
            de.write(src + "\n")
            en.write(tgt + "\n")
    return files


def text(folder: Path, megabytes: int, seed: int = 0) -> Path:
    """A text of about ``megabytes`` MB: Tiny Shakespeare's lines, each further copy in
    another order."""
    lines = dataset_file("tinyshakespeare", "input.txt").read_text().splitlines(keepends=True)
    path = folder / f"text-{megabytes}mb.txt"
    if path.is_file():
        return path
    rng, size = random.Random(seed), 0
    with open(path, "w") as out:
        while size < megabytes * 1e6:
            out.writelines(lines)
            size += sum(map(len, lines))
            rng.shuffle(lines)
    return path


def run(kind: str, size: int, work: Path, steps: int, ddp: bool) -> dict:
    """One row: ``kind`` "pairs" (``size`` pairs) or "text" (``size`` MB)."""
    if kind == "pairs":
        from seqkit.data.parallel import multi30k_files
        train, val = corpus(work, size), multi30k_files("val")
        overrides = ["task=translation", "data=parallel_files", "data.src_lang=de",
                     "data.tgt_lang=en", f"data.files.train=[{train[0]},{train[1]}]",
                     f"data.files.val=[{val[0]},{val[1]}]", "data.files.test=null"]
    else:
        overrides = ["task=lm", "data=text_files", f"data.files={text(work, size)}"]
    env = {**os.environ, "SEQKIT_CACHE": str(work / f"cache-{kind}-{size}"),
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqkit", "data", "prepare", *overrides], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    row = {"kind": kind, "size": size, "prepare_s": time.perf_counter() - start}

    def job(world: int, start: str) -> dict:
        out = subprocess.run([sys.executable, "-c", LAUNCH, str(world), str(steps), start,
                              *overrides], env=env, text=True, stdout=subprocess.PIPE)
        if out.returncode:
            raise RuntimeError(f"training failed at {kind} {size} ({world} processes, {start})")
        return json.loads(out.stdout.strip().splitlines()[-1])

    one = job(1, "fresh")
    row.update(one["rows"][0], pss_mb=one["pss_mb"])
    for start in ("fresh", "fork") if ddp else ():
        two = job(2, start)
        row[f"ddp_{start}_pss_mb"] = two["pss_mb"]
        row[f"ddp_{start}_pss_each_mb"] = two["pss_each_mb"]
        row[f"ddp_{start}_store_pss_mb"] = [r["store_pss_mb"] for r in two["rows"]]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[30_000, 300_000, 3_000_000])
    parser.add_argument("--text-mb", type=int, nargs="*", default=[28, 280],
                        help="sizes of the language model's text, MB")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ddp", action="store_true", help="also two DDP processes' PSS")
    parser.add_argument("--work", help="folder for the corpora and caches (default: a "
                        "temporary one)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seqkit-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    import torch
    print(f"torch {torch.__version__}, {os.cpu_count()} cores; work folder {work}")
    print(f"{'corpus':>14} {'prepare s':>10} {'start s':>8} {'peak RSS MB':>12} "
          f"{'tokens/s':>9} {'PSS 1 MB':>9} {'PSS 2 DDP':>10} {'2 DDP fork':>10}")
    rows = []
    for kind, size in [*(("pairs", n) for n in args.pairs),
                       *(("text", n) for n in args.text_mb)]:
        row = run(kind, size, work, args.steps, args.ddp and kind == "pairs")
        rows.append(row)
        name = f"{size:,} pairs" if kind == "pairs" else f"{size} MB text"
        print(f"{name:>14} {row['prepare_s']:>10.1f} {row['start_s']:>8.1f} "
              f"{row['peak_rss_mb']:>12.0f} {row['tokens_per_s']:>9.0f} {row['pss_mb']:>9.0f} "
              f"{row.get('ddp_fresh_pss_mb', float('nan')):>10.0f} "
              f"{row.get('ddp_fork_pss_mb', float('nan')):>10.0f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
