"""seqkit side by side with its peers, on the same machine, in one run, alternating systems.

    python scripts/bench_peers.py crf --threads 1 2        # seqkit.layers.CRF vs pytorch-crf

The peers are not seqkit dependencies: `pip install -e '.[bench]'` installs them. Implemented
so far: the CRF layer alone against pytorch-crf (forward = the mean negative log-likelihood,
forward+backward, Viterbi decoding to lists) at batch 32, length 30 (the batch's lengths drawn
from 10..30), 9 tags, with the same parameters in both; the two losses and paths are checked
equal before anything is timed. Every figure is the median of ``--repeats`` timings, the two
systems interleaved; ratios are seqkit time / peer time (below 1: seqkit is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def _median_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_crf(threads: int, repeats: int, batch: int = 32, length: int = 30,
              tags: int = 9) -> list[dict]:
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
    lengths = torch.randint(10, length + 1, (batch,), generator=gen)
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
            for _ in range(3):  # interleaved rounds: a load change hits both systems
                ours_ms.append(_median_ms(ours_fn, repeats))
                peer_ms.append(_median_ms(peer_fn, repeats))
        a, b = statistics.median(ours_ms), statistics.median(peer_ms)
        rows.append({"bench": "crf", "op": op, "threads": threads, "seqkit_ms": round(a, 3),
                     "pytorch_crf_ms": round(b, 3), "ratio": round(a / b, 3)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["crf"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = [row for t in args.threads for row in bench_crf(t, args.repeats)]
    print(f"machine load (1-min average) at the start: {load:.2f}; torch {torch.__version__}")
    print("| op | threads | seqkit ms | pytorch-crf ms | seqkit/peer |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['threads']} | {r['seqkit_ms']} | {r['pytorch_crf_ms']} "
              f"| {r['ratio']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
