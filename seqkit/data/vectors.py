"""Pretrained word vectors from a word2vec or GloVe text file."""
from __future__ import annotations

from pathlib import Path


def load_vectors(path: str | Path) -> dict[str, list[float]]:
    """word -> vector. GloVe files have one ``word v1 ... vd`` per line; word2vec text files
    also start with a ``count dim`` header line, which is skipped. Errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no word vectors file at {path}")
    vectors: dict[str, list[float]] = {}
    dim = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if not parts or parts == [""]:
                continue
            try:
                vec = [float(v) for v in parts[1:]]
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not a number in the vector of "
                                 f"{parts[0]!r} ({e})") from None
            if dim is None:
                dim = len(vec)
            elif len(vec) != dim:
                raise ValueError(f"{path}:{lineno}: vector of {parts[0]!r} has {len(vec)} "
                                 f"values, the file's first had {dim}")
            vectors[parts[0]] = vec
    if not vectors:
        raise ValueError(f"{path}: no vectors in the file")
    return vectors
