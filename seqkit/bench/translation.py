"""Benchmark the translation task's speed with its shipped config: training target tokens/s
and decoding sentences/s at beam 1 and beam 5, at each thread count asked for.

For each thread count it builds the default model (same seed, same weights), trains it for
``--steps`` steps on Multi30k batches (the first ``--warmup`` untimed), then decodes the first
``--sentences`` validation sources greedily and with a beam of 5 using the config's decoding
options. A model this briefly trained writes hypotheses of a different length than a converged
one, so the mean hypothesis/reference length ratio is printed next to the speed.

With ``--profile`` it instead splits the training step into its parts, timed one after the
other with the graph cut between them (each part's output detached, its gradient passed back
by hand): the data (the next batch), the encoder (embeddings, bidirectional layer, bridge,
attention keys), the input-fed decoder loop, the output layer with its loss, each forward and
backward, and the optimizer (clipping and Adam); the whole step timed uncut beside it.

Run:  SEQKIT_DATA=../shared/data seqkit bench translation --threads 1 2
      seqkit bench translation --threads 1 -- data.src_lang=en data.tgt_lang=de
      seqkit bench translation --threads 1 2 --profile --steps 100
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seqkit.tasks.seq2seq import generate, smoothed_cross_entropy
from seqkit.train import CONFIGS


def build(overrides: list[str]):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["task=translation", *overrides])
    data = instantiate(cfg.data)
    data.setup("fit")
    return cfg, data


def trainee(cfg, data):
    """The default model (seeded), its task (the training loss), the task's optimizer, and an
    endless stream of training batches."""
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, **data.dims())
    task = instantiate(cfg.module, model=model)
    model.train()
    return model, task, task.optimizer(params=model.parameters()), \
        itertools.cycle(data.train_dataloader())


def update(model, optimizer, clip: float) -> None:
    """The step after the backward pass: clipping, then the optimizer."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def train_speed(cfg, data, steps: int, warmup: int) -> tuple[torch.nn.Module, float]:
    """The model after ``steps`` Adam steps, and target tokens/s over the timed ones."""
    model, task, optimizer, batches = trainee(cfg, data)
    tokens, start = 0, None
    for step in range(steps):
        if step == warmup:
            tokens, start = 0, time.perf_counter()
        loss, _, n = task._loss(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        update(model, optimizer, cfg.trainer.gradient_clip_val)
        tokens += n
    return model, tokens / (time.perf_counter() - start)


PARTS = ("data", "encoder forward", "decoder loop forward", "output layer and loss forward",
         "output layer and loss backward", "decoder loop backward", "encoder backward",
         "optimizer")


def cut_step(model, batch: dict, smoothing: float, lap=lambda: None) -> None:
    """The training loss's forward and backward with the graph cut between the encoder, the
    decoder loop and the output layer: each part's output detached and its gradient passed
    back by hand, ``lap()`` after each of the six parts. The gradients are the uncut ones."""
    def cut(tensor):
        return tensor.detach().requires_grad_(tensor.is_floating_point())

    state = model.encode(batch["src"], batch["src_lengths"])
    emb = model.dropout(model.tgt_embed(batch["tgt_in"]))
    lap()
    cut_state, cut_emb = {k: cut(v) for k, v in state.items()}, cut(emb)
    decoded = model.decoder(cut_emb, cut_state)
    lap()
    target = batch["tgt_out"]
    real = target != model.pad_index
    vectors = cut(decoded.vectors)
    loss, _, _ = smoothed_cross_entropy(model.generator.logits(vectors[real]), target[real],
                                        smoothing)
    lap()
    loss.backward()
    lap()
    decoded.vectors.backward(vectors.grad)
    lap()
    reached = [k for k in state if cut_state[k].grad is not None]
    torch.autograd.backward([emb, *(state[k] for k in reached)],
                            [cut_emb.grad, *(cut_state[k].grad for k in reached)])
    lap()


def profile_step(cfg, data, steps: int, warmup: int) -> dict[str, float]:
    """Milliseconds per training step in each of PARTS (medians over the timed steps), and the
    uncut step's ("whole step"), for the default (input-fed, non-copying) model; cut and uncut
    steps alternate."""
    model, task, optimizer, batches = trainee(cfg, data)
    times: dict[str, list[float]] = {part: [] for part in (*PARTS, "whole step")}
    for step in range(2 * steps):
        clock = [time.perf_counter()]

        def lap():
            clock.append(time.perf_counter())
        batch = next(batches)
        lap()
        optimizer.zero_grad(set_to_none=True)
        if step % 2:
            task._loss(batch)[0].backward()
        else:
            cut_step(model, batch, cfg.module.label_smoothing, lap)
        update(model, optimizer, cfg.trainer.gradient_clip_val)
        lap()
        if step < 2 * warmup:
            continue
        if step % 2:
            times["whole step"].append(clock[-1] - clock[0])
        else:
            for part, a, b in zip(PARTS, clock, clock[1:]):
                times[part].append(b - a)
    return {part: 1e3 * statistics.median(t) for part, t in times.items()}


def decode_speed(cfg, data, model, beam: int, sentences: int) -> tuple[float, float]:
    """Sentences/s decoding the first validation sources, and the hypothesis/reference
    length ratio in target pieces."""
    model.eval()
    done = hyp_len = ref_len = 0
    options = dict(cfg.module.decoding)
    start = time.perf_counter()
    for batch in data.val_dataloader():
        ids = generate(model, batch["src"], batch["src_lengths"], beam, **options)
        done += len(ids)
        hyp_len += sum(map(len, ids))
        ref_len += int((batch["tgt_out"] > 0).sum()) - len(ids)  # without eos
        if done >= sentences:
            break
    return done / (time.perf_counter() - start), hyp_len / ref_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sentences", type=int, default=1014, help="validation sources")
    parser.add_argument("--profile", action="store_true",
                        help="split the training step into its parts instead")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model/encoder=gru")
    args = parser.parse_args()

    cfg, data = build(args.overrides)
    if args.profile:
        profile(cfg, data, args)
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, config task=translation "
          f"{' '.join(args.overrides)}; {args.steps} training steps ({args.warmup} untimed)")
    print("| threads | train tgt tokens/s | greedy sents/s | beam 5 sents/s | hyp/ref length |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        model, tokens_per_s = train_speed(cfg, data, args.steps, args.warmup)
        greedy, ratio = decode_speed(cfg, data, model, 1, args.sentences)
        beam, _ = decode_speed(cfg, data, model, 5, args.sentences)
        rows.append({"threads": threads, "train_tokens_per_s": tokens_per_s,
                     "greedy_sents_per_s": greedy, "beam5_sents_per_s": beam,
                     "length_ratio": ratio})
        print(f"| {threads} | {tokens_per_s:,.0f} | {greedy:,.1f} | {beam:,.1f} | {ratio:.2f} |",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


def profile(cfg, data, args) -> None:
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, config task=translation "
          f"{' '.join(args.overrides)}; {args.steps} cut and {args.steps} uncut training "
          f"steps ({args.warmup} of each untimed); milliseconds per step, medians")
    rows = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows[threads] = profile_step(cfg, data, args.steps, args.warmup)
    print("| part | " + " | ".join(f"{t} thread(s) | share" for t in rows) + " |")
    print("|---|" + "---:|---:|" * len(rows))
    for part in (*PARTS, "sum of the parts", "whole step"):
        cells = []
        for times in rows.values():
            total = sum(times[p] for p in PARTS)
            ms = total if part == "sum of the parts" else times[part]
            cells.append(f"{ms:.1f} | {100 * ms / total:.0f}%")
        print(f"| {part} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
