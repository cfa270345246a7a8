"""``seqkit data``: prepare a run's data ahead of a (cluster) job, and list what the data
cache holds.

    seqkit data prepare task=translation data=parallel_files "data.files.train=[a.de,a.en]" ...
    seqkit data list
"""
from __future__ import annotations

import json
from pathlib import Path

from .cache import data_root, derived_root, verify
from .catalog import DATASETS


def prepare(overrides: list[str], config_dir: str | None = None) -> Path | None:
    """Build the token store of the data a ``train.py`` command line describes (its
    ``overrides``; ``config_dir``: the user's configs beside seqkit's); its folder, or None
    when the task's data has no store (it is read at the start of each run)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ..runs import CONFIGS

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        searchpath = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] \
            if config_dir else []
        cfg = compose("train", [*searchpath, *overrides])
    store = instantiate(cfg.data).prepare_data()
    return None if store is None else store.folder


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
        else path.stat().st_size


def listing() -> list[dict]:
    """One row per catalogued dataset (present files, folder, size, checksums) and per
    prepared token store."""
    rows, root = [], data_root()
    for name, spec in sorted(DATASETS.items()):
        checked = verify(name, root) if (root / name).is_dir() else {}
        rows.append({"dataset": name, "path": str(root / name),
                     "present": f"{len(checked)}/{len(spec.files)} files",
                     "size_mb": round(_size(root / name) / 1e6, 1) if checked else 0.0,
                     "checksums": ("ok" if checked and all(checked.values()) else
                                   "MISMATCH" if checked else "-")})
    for meta in sorted((derived_root() / "stores").glob("*/meta.json")):
        store = json.loads(meta.read_text())
        rows.append({"store": meta.parent.name, "path": str(meta.parent),
                     "examples": store["examples"], "size_mb": round(_size(meta.parent) / 1e6, 1),
                     "inputs": store.get("inputs", [])})
    return rows
