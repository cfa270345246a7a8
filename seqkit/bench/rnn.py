"""Benchmark seqkit's recurrent layers against torch.nn.

Measures, for RNN, GRU and LSTM at two sizes, the wall time of three systems running the
same weights: torch.nn.{RNN,GRU,LSTM}, seqkit.nn with backend="cudnn" (torch's fused
kernels) and seqkit.nn with backend="custom" (seqkit's own cells). Each is timed
forward-only (inference mode) and forward+backward. Within every repeat the systems run
round-robin, so drift in machine load hits all of them alike; the table reports median
times and the median of the per-repeat ratios seqkit / torch.nn. It also reports the
custom backend's achieved GFLOP/s (recurrent matmuls only) next to a measured sgemm peak.

Run:  seqkit bench rnn --json bench.json
      seqkit bench rnn --quick            # tiny smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import seqkit.nn

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
TORCH_CLASSES = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
SEQKIT_CLASSES = {"rnn": seqkit.nn.RNN, "gru": seqkit.nn.GRU, "lstm": seqkit.nn.LSTM}
SIZES = {"C1": dict(B=32, T=100, I=128, H=256, L=1), "C2": dict(B=64, T=50, I=256, H=512, L=2)}
QUICK = dict(B=4, T=10, I=8, H=16)
SYSTEMS = ("torch.nn", "seqkit cudnn", "seqkit custom")
MODES = ("fwd", "fwdbwd", "packed")  # packed: fwdbwd on lengths drawn from [T/2, T]
DEFAULT_MODES = ("fwd", "fwdbwd")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of fn takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def sgemm_peak(device: torch.device, n: int = 2048, runs: int = 5) -> float:
    """Median GFLOP/s of an n x n @ n x n float32 matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    timed(lambda: a @ b, device)
    return 2 * n**3 / statistics.median(timed(lambda: a @ b, device) for _ in range(runs)) / 1e9


def layer_flops(cell: str, size: dict, mode: str) -> float:
    """Matmul FLOPs of the stack: 2*T*B*G*H*(I_layer + H) per layer forward, 3x with backward."""
    T, B, I, H, L = (size[k] for k in ("T", "B", "I", "H", "L"))
    fwd = sum(2 * T * B * GATES[cell] * H * ((I if k == 0 else H) + H) for k in range(L))
    return fwd * (1 if mode == "fwd" else 3)


def build_systems(cell: str, size: dict, device: torch.device) -> dict[str, torch.nn.Module]:
    """torch.nn's layer and the two seqkit backends, all holding the same weights."""
    args = (size["I"], size["H"], size["L"])
    reference = TORCH_CLASSES[cell](*args).to(device)
    systems = {"torch.nn": reference}
    for backend in ("cudnn", "custom"):
        twin = SEQKIT_CLASSES[cell](*args, backend=backend)
        twin.load_state_dict(reference.state_dict())
        systems[f"seqkit {backend}"] = twin.to(device)
    return systems


def make_input(size: dict, mode: str, device: torch.device):
    """(T, B, I) input; for ``packed`` a PackedSequence with lengths drawn from [T/2, T]."""
    T, B = size["T"], size["B"]
    x = torch.randn(T, B, size["I"], device=device, requires_grad=mode == "fwdbwd")
    if mode != "packed":
        return x
    lengths = torch.randint(T // 2, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    return packed._replace(data=packed.data.requires_grad_())  # a leaf, as x is


def make_step(module: torch.nn.Module, x, mode: str) -> Callable[[], None]:
    """One benchmark step: a forward pass, or forward plus backward of a random projection."""
    if mode == "fwd":
        def step() -> None:
            with torch.inference_mode():
                module(x)
        return step
    data = x.data if isinstance(x, PackedSequence) else x
    projection = torch.randn(*data.shape[:-1], module.hidden_size, device=data.device)

    def step() -> None:
        module.zero_grad(set_to_none=True)
        output, _ = module(x)
        output = output.data if isinstance(output, PackedSequence) else output
        (output * projection).sum().backward()
    return step


def check_agreement(systems: dict[str, torch.nn.Module], x: torch.Tensor, cell: str) -> None:
    """Warn on stderr if a seqkit backend's output differs from torch.nn's."""
    with torch.no_grad():
        def out(name):
            y = systems[name](x)[0]
            return y.data if isinstance(y, PackedSequence) else y

        expected = out("torch.nn")
        for name in SYSTEMS[1:]:
            diff = (out(name) - expected).abs().max().item()
            if diff > 1e-4:
                print(f"WARNING {cell} {name}: max |output - torch.nn| = {diff:.2e}",
                      file=sys.stderr)


def bench_case(cell: str, size_name: str, size: dict, mode: str, repeats: int, warmup: int,
               device: torch.device) -> dict:
    """Interleaved timing of the three systems; medians of times and of paired ratios."""
    systems = build_systems(cell, size, device)
    x = make_input(size, mode, device)
    check_agreement(systems, x, cell)
    steps = {name: make_step(m, x, mode) for name, m in systems.items()}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for r in range(repeats):
        order = SYSTEMS[r % 3:] + SYSTEMS[:r % 3]  # rotate who goes first
        for name in order:
            times[name].append(timed(steps[name], device))
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(times[name], times["torch.nn"]))
             for name in SYSTEMS[1:]}
    return dict(cell=cell, size=size_name, **size, mode=mode, repeats=repeats,
                torch_ms=ms["torch.nn"], cudnn_ms=ms["seqkit cudnn"],
                custom_ms=ms["seqkit custom"], cudnn_ratio=ratio["seqkit cudnn"],
                custom_ratio=ratio["seqkit custom"],
                custom_gflops=layer_flops(cell, size, mode) * _token_share(x, size)
                / ms["seqkit custom"] / 1e6)


def _token_share(x, size: dict) -> float:
    """Fraction of the T * B steps a (packed) input really has."""
    data = x.data if isinstance(x, PackedSequence) else x
    return data.numel() / data.size(-1) / (size["T"] * size["B"])


def print_table(threads: int, rows: list[dict]) -> None:
    print(f"\n### threads = {threads}\n")
    print("| cell | size | mode | torch.nn ms | seqkit cudnn ms | seqkit custom ms "
          "| cudnn/torch | custom/torch | custom GFLOP/s | peak GFLOP/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {r['size']} | {r['mode']} | {r['torch_ms']:.3f} "
              f"| {r['cudnn_ms']:.3f} | {r['custom_ms']:.3f} | {r['cudnn_ratio']:.2f} "
              f"| {r['custom_ratio']:.2f} | {r['custom_gflops']:.1f} "
              f"| {r['peak_gflops']:.1f} |")
    sys.stdout.flush()


def csv(kind: type) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=csv(int), default=[1, 2],
                   help="comma list of torch.set_num_threads values (default 1,2)")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--cells", type=csv(str), default=list(GATES), help="default rnn,gru,lstm")
    p.add_argument("--sizes", type=csv(str), default=list(SIZES), help="default C1,C2")
    p.add_argument("--modes", type=csv(str), default=list(DEFAULT_MODES),
                   help="fwd, fwdbwd, packed (fwdbwd on variable lengths); default fwd,fwdbwd")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", metavar="PATH", help="write all results as a list of dicts")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: sizes {QUICK}, 3 repeats, 1 warm-up")
    args = p.parse_args(argv)
    for name, values, known in (("cells", args.cells, GATES), ("sizes", args.sizes, SIZES),
                                ("modes", args.modes, MODES)):
        if unknown := set(values) - set(known):
            p.error(f"--{name}: unknown {sorted(unknown)}; choose from {list(known)}")
    if args.quick:
        args.repeats, args.warmup = 3, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA not available; running on cpu", file=sys.stderr)
        device = torch.device("cpu")
    sizes = {n: {**SIZES[n], **(QUICK if args.quick else {})} for n in args.sizes}
    print(f"torch {torch.__version__} | device {device} | torch threads "
          f"{torch.get_num_threads()} | cpus {os.cpu_count()} | "
          f"load avg (1 min) {os.getloadavg()[0]:.2f}")
    torch.manual_seed(0)
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = sgemm_peak(device)
        rows = []
        for cell in args.cells:
            for size_name, size in sizes.items():
                for mode in args.modes:
                    print(f"[threads={threads}] {cell} {size_name} {mode}", file=sys.stderr)
                    row = bench_case(cell, size_name, size, mode, args.repeats, args.warmup,
                                     device)
                    rows.append(dict(row, threads=threads, device=str(device),
                                     peak_gflops=peak, load1=os.getloadavg()[0]))
        print_table(threads, rows)
        results += rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {len(results)} results to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
