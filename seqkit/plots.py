"""Pictures a person reads in a run folder: learning curves, confusion matrices, attention,
piano rolls, gate activations."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(metrics_csv: Path, path: Path) -> Path | None:
    """One panel per metric name (loss, acc, ...), train and val curves against the step."""
    if not Path(metrics_csv).is_file():
        return None
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if "/" in key and value not in ("", None) and not key.startswith("test/"):
                    series[key].append((float(row.get("step") or 0), float(value)))
    names = sorted({k.split("/", 1)[1] for k in series if not k.endswith("_step")})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        for key in sorted(k for k in series if k.split("/", 1)[1] in (name, f"{name}_epoch")):
            steps, values = zip(*series[key])
            ax.plot(steps, values, label=key, marker="." if len(steps) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return _save(fig, path)


def confusion_matrix(matrix, labels: list[str] | None, path: Path) -> Path:
    """matrix[i, j]: how many examples of true class i were predicted as j."""
    n = matrix.shape[0]
    labels = labels or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 1 + 0.6 * n))
    ax.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, path)


def attention_heatmap(weights, source: list[str], target: list[str], path: Path) -> Path:
    """weights[t, s] (T, S): how much output token t attended to source token s."""
    T, S = weights.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.35 * S, 1 + 0.35 * T))
    ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), source, rotation=90, fontsize=8)
    ax.set_yticks(range(T), target, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    return _save(fig, path)


def piano_roll(roll, path: Path, primer_frames: int = 0, lowest: int = 21) -> Path:
    """roll[t, j] (T, 88): note ``lowest + j`` sounds in frame t; a line ends the primer."""
    import numpy as np

    roll = np.asarray(roll, dtype=float)
    T, keys = roll.shape
    used = np.flatnonzero(roll.any(0))
    low, high = (used.min(), used.max() + 1) if used.size else (0, keys)
    fig, ax = plt.subplots(figsize=(min(2 + 0.08 * T, 20), 3))
    ax.imshow(roll[:, low:high].T, cmap="Greys", origin="lower", aspect="auto",
              interpolation="nearest", extent=(0, T, lowest + low - 0.5, lowest + high - 0.5))
    if primer_frames:
        ax.axvline(primer_frames, color="tab:red", linewidth=1, label="end of primer")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("frame")
    ax.set_ylabel("MIDI pitch")
    return _save(fig, path)


GATE_LABELS = {"update": "Γu (update)", "forget": "Γf (forget)", "output": "Γo (output)",
               "cell": "c<t> (memory cell)", "reset": "Γr (reset)",
               "candidate": "c̃<t> (candidate)", "hidden": "c<t> (hidden state)"}


def gate_activations(trace: dict, path: Path, tokens: list[str] | None = None,
                     units: int = 32) -> Path:
    """One heatmap per gate or state of ``trace`` (``seqkit.layers.gate_trace``: name -> (T, H)),
    time across, the first ``units`` hidden units down; gates on [0, 1], states centred on 0."""
    import numpy as np

    names = list(trace)
    T = next(iter(trace.values())).shape[0]
    fig, axes = plt.subplots(len(names), 1, figsize=(min(3 + 0.3 * T, 24), 1.6 * len(names)),
                             sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        values = np.asarray(trace[name], dtype=float)[:, :units].T
        gate = name in ("update", "forget", "output", "reset")
        limit = 1.0 if gate else max(float(np.abs(values).max()), 1e-6)
        image = ax.imshow(values, aspect="auto", interpolation="nearest",
                          cmap="viridis" if gate else "RdBu_r",
                          vmin=0.0 if gate else -limit, vmax=limit)
        ax.set_ylabel(GATE_LABELS.get(name, name), rotation=0, ha="right", va="center",
                      fontsize=9)
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, pad=0.01, fraction=0.02)
    ax = axes[-1, 0]
    if tokens is not None:
        ax.set_xticks(range(T), [repr(t)[1:-1] for t in tokens], fontsize=8,
                      rotation=90 if max(map(len, tokens), default=1) > 2 else 0)
    ax.set_xlabel("t")
    return _save(fig, path)
