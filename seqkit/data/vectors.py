"""Pretrained word vectors: a word2vec or GloVe text file, or a catalog name (``VECTORS``)
whose file the data cache holds or downloads, as datasets are (``seqkit.data.cache``).

    data.vectors=glove.6B.100d          # <data root>/glove/glove.6B.100d.txt
    data.vectors=/path/to/vectors.txt
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import dataset_file

# name -> (dataset, file) in seqkit.data.catalog: GloVe 6B (Wikipedia 2014 + Gigaword 5,
# uncased, 400k words; one zip of 822 MB holds all four) and fastText's English Wikipedia
# vectors (300d, 2.5M words, 6 GB)
VECTORS = {**{f"glove.6B.{d}d": ("glove", f"glove.6B.{d}d.txt") for d in (50, 100, 200, 300)},
           "fasttext.wiki.en": ("fasttext", "wiki.en.vec")}


def vectors_file(name: str | Path) -> Path:
    """The file of a catalog name (in the data cache, downloaded if missing; an error names
    the folder to put it in when it cannot be), else ``name`` as a path."""
    if str(name) in VECTORS:
        return dataset_file(*VECTORS[str(name)])
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no word vectors file at {path}; give a word2vec or GloVe "
                                f"text file, or one of {', '.join(VECTORS)}")
    return path


def load_vectors(name: str | Path) -> dict[str, np.ndarray]:
    """word -> float32 vector, from a file or a catalog name (``vectors_file``). GloVe files
    have one ``word v1 ... vd`` per line; word2vec text files also start with a ``count dim``
    header line, which is skipped. Errors name file and line."""
    path = vectors_file(name)
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if not parts or parts == [""]:
                continue
            try:
                vec = np.array(parts[1:], dtype=np.float32)
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
