"""Benchmark seqkit's recurrent layers against torch.nn.

Measures, for RNN, GRU and LSTM at two sizes, the wall time of systems running torch.nn's
weights. For the plain cell there are three: torch.nn.{RNN,GRU,LSTM}, seqkit.nn with
backend="cudnn" (torch's fused kernels) and seqkit.nn with backend="custom" (seqkit's own
cells), checked to agree. For each cell option in OPTIONS (layer norm, recurrent dropout,
zoneout, ...) there are two: the torch.nn layer as the reference (plain; relu for the RNN's
relu row), and seqkit.nn built with that option as a user would, backend="auto" (the layer
picks its path: the fused kernels where they can, as for relu or for recurrent dropout in
eval), holding torch.nn's weights where the shapes match (not the coupled LSTM's 3 gates);
the option's own parameters keep their init.
Each is timed forward-only (eval mode, inference mode) and forward+backward (train mode,
so dropout and zoneout do their work). Within every repeat the systems run round-robin, so
drift in machine load hits all of them alike; the table reports median times and the
median of the per-repeat ratios seqkit / torch.nn. It also reports the seqkit layer's
achieved GFLOP/s (its matmuls only) next to a measured sgemm peak: torch.mm's and, on CPU,
oneDNN's (seqkit.matmul), which seqkit's float32 kernels use where torch has it.

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
from seqkit import keep_freed_memory, matmul
from seqkit.layers import Recurrent, captured

_LN, _RD, _ZO, _PH = ({"layer_norm": True}, {"recurrent_dropout": 0.25}, {"zoneout": 0.1},
                      {"peephole": True})
_EVERY_CELL = {"plain": {}, "layer_norm": _LN, "recurrent_dropout": _RD, "zoneout": _ZO}
_COMBOS = {"layer_norm+recurrent_dropout": {**_LN, **_RD}, "layer_norm+zoneout": {**_LN, **_ZO}}
OPTIONS = {  # cell -> option row -> keyword arguments of seqkit.nn's layer
    "rnn": {**_EVERY_CELL, "relu": {"nonlinearity": "relu"}, **_COMBOS},
    "gru": {**_EVERY_CELL, "reset_after=False": {"reset_after": False}, **_COMBOS},
    "lstm": {**_EVERY_CELL, "zoneout_c": {**_ZO, "zoneout_c": 0.1}, "peephole": _PH,
             "coupled": {"coupled": True}, **_COMBOS, "peephole+recurrent_dropout": {**_PH, **_RD}},
}
TORCH_OPTIONS = {"nonlinearity"}  # options the torch.nn reference takes too
TORCH_CLASSES = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
SEQKIT_CLASSES = {"rnn": seqkit.nn.RNN, "gru": seqkit.nn.GRU, "lstm": seqkit.nn.LSTM}
SIZES = {"C1": dict(B=32, T=100, I=128, H=256, L=1), "C2": dict(B=64, T=50, I=256, H=512, L=2)}
QUICK = dict(B=4, T=10, I=8, H=16)
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


def sgemm_peak(device: torch.device, n: int = 2048, runs: int = 5,
               product: Callable = torch.mm) -> float:
    """Median GFLOP/s of an n x n @ n x n float32 matmul by ``product``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    timed(lambda: product(a, b), device)
    times = [timed(lambda: product(a, b), device) for _ in range(runs)]
    return 2 * n**3 / statistics.median(times) / 1e9


def layer_flops(layer: torch.nn.Module, size: dict, mode: str) -> float:
    """Matmul FLOPs of the stack: 2*T*B per entry of every weight_ih and weight_hh forward,
    3x with backward."""
    per_step = sum(2 * (w[0].numel() + w[1].numel()) for w in layer.all_weights)
    return size["T"] * size["B"] * per_step * (1 if mode == "fwd" else 3)


def build_systems(cell: str, option: str, size: dict,
                  device: torch.device) -> dict[str, torch.nn.Module]:
    """torch.nn's layer first, then seqkit's holding its weights: both backends for the plain
    cell, the layer with ``option`` and backend="auto" otherwise."""
    args, kwargs = (size["I"], size["H"], size["L"]), OPTIONS[cell][option]
    reference = TORCH_CLASSES[cell](*args, **{k: v for k, v in kwargs.items()
                                               if k in TORCH_OPTIONS}).to(device)
    weights = reference.state_dict()
    backends = {"cudnn": "cudnn", "custom": "custom"} if option == "plain" else {"custom": "auto"}
    systems = {"torch.nn": reference}
    for name, backend in backends.items():
        twin = SEQKIT_CLASSES[cell](*args, backend=backend, **kwargs)
        own = twin.state_dict()  # coupled LSTM weights have 3 gates, not 4: those keep their init
        twin.load_state_dict({k: v for k, v in weights.items() if v.shape == own[k].shape},
                             strict=False)
        systems[f"seqkit {name}"] = twin.to(device)
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
    """One benchmark step: a forward pass in eval mode, or, in train mode, forward plus backward
    of a random projection."""
    module.train(mode != "fwd")
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
        for name in list(systems)[1:]:
            diff = (out(name) - expected).abs().max().item()
            if diff > 1e-4:
                print(f"WARNING {cell} {name}: max |output - torch.nn| = {diff:.2e}",
                      file=sys.stderr)


def bench_case(cell: str, option: str, size_name: str, size: dict, mode: str, repeats: int,
               warmup: int, device: torch.device) -> dict:
    """Interleaved timing of the systems; medians of times and of paired ratios."""
    systems = build_systems(cell, option, size, device)
    x = make_input(size, mode, device)
    if option == "plain":  # an option changes the function
        check_agreement(systems, x, cell)
    steps = {name: make_step(m, x, mode) for name, m in systems.items()}
    for _ in range(warmup):
        for step in steps.values():
            step()
    names = list(systems)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            times[name].append(timed(steps[name], device))
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(times[name], times["torch.nn"]))
             for name in names[1:]}
    return dict(cell=cell, option=option, size=size_name, **size, mode=mode, repeats=repeats,
                torch_ms=ms["torch.nn"], cudnn_ms=ms.get("seqkit cudnn"),
                custom_ms=ms["seqkit custom"], cudnn_ratio=ratio.get("seqkit cudnn"),
                custom_ratio=ratio["seqkit custom"],
                custom_gflops=layer_flops(systems["seqkit custom"], size, mode)
                * _token_share(x, size) / ms["seqkit custom"] / 1e6)


def _token_share(x, size: dict) -> float:
    """Fraction of the T * B steps a (packed) input really has."""
    data = x.data if isinstance(x, PackedSequence) else x
    return data.numel() / data.size(-1) / (size["T"] * size["B"])


def print_table(threads: int, rows: list[dict]) -> None:
    print(f"\n### threads = {threads}\n")
    print("| cell | size | mode | option | torch.nn ms | seqkit cudnn ms | seqkit custom ms "
          "| cudnn/torch | custom/torch | custom GFLOP/s | peak GFLOP/s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for r in rows:
        print(f"| {r['cell']} | {r['size']} | {r['mode']} | {r['option']} "
              f"| {num(r['torch_ms'], 3)} | {num(r['cudnn_ms'], 3)} | {num(r['custom_ms'], 3)} "
              f"| {num(r['cudnn_ratio'], 2)} | {num(r['custom_ratio'], 2)} "
              f"| {num(r['custom_gflops'], 1)} | {num(r['peak_gflops'], 1)} |")
    sys.stdout.flush()


TARGETS = {("fwdbwd", 1): 1.3, ("fwdbwd", 2): 1.5, ("fwd", 1): 1.5, ("fwd", 2): 2.0}
"""The most seqkit / torch.nn may take: training at 1 and 2 threads, then evaluation."""


def print_summary(rows: list[dict]) -> None:
    """One line per cell and option: the ratios seqkit / torch.nn of every mode, size and
    thread count, in bold where above ``TARGETS``."""
    columns = sorted({(r["mode"], r["size"], r["threads"]) for r in rows},
                     key=lambda c: (c[0] != "fwdbwd", c[1], c[2]))
    names = {"fwdbwd": "train", "fwd": "eval", "packed": "packed"}
    print("\n| cell | option | " + " | ".join(f"{names[m]} {s} {t}t" for m, s, t in columns)
          + " |\n|---|---|" + "---:|" * len(columns))
    ratios = {(r["cell"], r["option"], r["mode"], r["size"], r["threads"]): r["custom_ratio"]
              for r in rows}
    for cell, option in dict.fromkeys((r["cell"], r["option"]) for r in rows):
        cells = []
        for mode, size, threads in columns:
            ratio = ratios.get((cell, option, mode, size, threads))
            above = ratio is not None and ratio > TARGETS.get((mode, threads), float("inf"))
            cells.append("-" if ratio is None else f"**{ratio:.2f}**" if above else f"{ratio:.2f}")
        print(f"| {cell} | {option} | " + " | ".join(cells) + " |")


def csv(kind: type) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=csv(int), default=[1, 2],
                   help="comma list of torch.set_num_threads values (default 1,2)")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    p.add_argument("--cells", type=csv(str), default=list(OPTIONS), help="default rnn,gru,lstm")
    p.add_argument("--options", type=csv(str),
                   help="comma list of option rows (see OPTIONS; a+b is both); default all")
    p.add_argument("--sizes", type=csv(str), default=list(SIZES), help="default C1,C2")
    p.add_argument("--modes", type=csv(str), default=list(DEFAULT_MODES),
                   help="fwd, fwdbwd, packed (fwdbwd on variable lengths); default fwd,fwdbwd")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="seqkit's layers capture their CUDA training calls in CUDA graphs "
                        "(seqkit.layers.captured; at least AFTER + 1 warm-up runs)")
    p.add_argument("--json", metavar="PATH", help="write all results as a list of dicts")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: sizes {QUICK}, 3 repeats, 1 warm-up")
    args = p.parse_args(argv)
    options = list(dict.fromkeys(o for c in args.cells if c in OPTIONS for o in OPTIONS[c]))
    args.options = args.options or options
    for name, values, known in (("cells", args.cells, OPTIONS), ("sizes", args.sizes, SIZES),
                                ("modes", args.modes, MODES), ("options", args.options, options)):
        if unknown := set(values) - set(known):
            p.error(f"--{name}: unknown {sorted(unknown)}; choose from {list(known)}")
    if args.quick:
        args.repeats, args.warmup = 3, 1
    if args.cuda_graphs:  # the capture happens during the warm-up, not in a timed run
        args.warmup = max(args.warmup, captured.AFTER + 1)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    keep_freed_memory()  # for torch.nn's layers and seqkit's alike, as seqkit's commands do
    if args.cuda_graphs:
        Recurrent.cuda_graphs = True
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA not available; running on cpu", file=sys.stderr)
        device = torch.device("cpu")
    sizes = {n: {**SIZES[n], **(QUICK if args.quick else {})} for n in args.sizes}
    print(f"torch {torch.__version__} | device {device} | torch threads "
          f"{torch.get_num_threads()} | cpus {os.cpu_count()} | "
          f"load avg (1 min) {os.getloadavg()[0]:.2f}"
          + (" | CUDA graphs on" if Recurrent.cuda_graphs else ""))
    torch.manual_seed(0)
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = sgemm_peak(device)
        onednn = (sgemm_peak(device, product=matmul.mm)
                  if device.type == "cpu" and matmul.onednn() else None)
        print(f"[threads={threads}] sgemm peak: torch.mm {peak:.1f} GFLOP/s"
              + ("" if onednn is None else f", oneDNN {onednn:.1f} GFLOP/s"))
        rows = []
        for cell in args.cells:
            for size_name, size in sizes.items():
                for mode in args.modes:
                    for option in (o for o in OPTIONS[cell] if o in args.options):
                        print(f"[threads={threads}] {cell} {size_name} {mode} {option}",
                              file=sys.stderr)
                        row = bench_case(cell, option, size_name, size, mode, args.repeats,
                                         args.warmup, device)
                        rows.append(dict(row, threads=threads, device=str(device),
                                         peak_gflops=peak, onednn_peak_gflops=onednn,
                                         load1=os.getloadavg()[0]))
        print_table(threads, rows)
        results += rows
    print_summary(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {len(results)} results to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
