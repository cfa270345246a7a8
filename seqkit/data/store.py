"""Token stores: a corpus split encoded once into memory-mapped arrays, kept in the derived
cache and shared by every run and process that reads the same data the same way.

A store is a folder holding, per field (``src``, ``tgt``, ...), the examples' token ids
concatenated (``<field>.ids``, in the smallest unsigned dtype the vocabulary fits) and their
offsets (``<field>.offsets``, int64, one more than there are examples), plus ``meta.json`` and
any files the builder adds (the tokenizer). Field ``f`` of example ``i`` is
``ids[offsets[i]:offsets[i + 1]]``. Memory stays flat in the corpus size: the arrays are
mapped, not read, so the page cache holds them once for all processes.

It is built streaming into a temporary folder beside its place and renamed into place, by
one process at a time (a lock file beside it): a build killed midway leaves no store, only a
``.part`` folder that the next build removes, and processes that want the store while one
builds it wait for it, then map the same files.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
FORMAT = 1  # the layout and what builders write: a new one keys new stores


def content_key(files: Iterable[str | Path], options: dict) -> str:
    """A key for what a store is built from: the bytes of ``files`` and ``options``."""
    digest = hashlib.sha256(json.dumps({**options, "format": FORMAT}, sort_keys=True,
                                       default=str).encode())
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no file {path}")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids below ``vocab_size``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


class TokenStore:
    """A built store: ``ids`` maps each field's ids read-only (a stream reads them whole:
    the language model's text); ``store[i]`` reads example ``i`` with
    ``os.pread``, so that random access leaves no mapped pages behind in the process (they
    stay in the page cache, shared by every process, but outside each one's RSS)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: a token store of format "
                             f"{self.meta.get('format')!r}; this seqkit reads {FORMAT}")
        self.dtype = np.dtype(self.meta["dtype"])
        self.fields = tuple(self.meta["fields"])
        self.ids = {f: _map(self.folder / f"{f}.ids", self.dtype) for f in self.fields}
        self._open: tuple[int, dict] | None = None  # (process id, field -> file descriptors)

    def __len__(self) -> int:
        return self.meta["examples"]

    def __getitem__(self, i: int) -> tuple[list[int], ...]:
        width, out = self.dtype.itemsize, []
        for ids, offsets in self._descriptors().values():
            start, end = np.frombuffer(os.pread(offsets, 16, 8 * i), np.int64).tolist()
            out.append(np.frombuffer(os.pread(ids, (end - start) * width, start * width),
                                     self.dtype).tolist())
        return tuple(out)

    def _descriptors(self) -> dict[str, tuple[int, int]]:
        """This process's file descriptors (a DataLoader worker opens its own)."""
        if self._open is None or self._open[0] != os.getpid():
            self._open = (os.getpid(), {f: tuple(os.open(self.folder / f"{f}.{kind}",
                                                         os.O_RDONLY)
                                                 for kind in ("ids", "offsets"))
                                        for f in self.fields})
        return self._open[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": None}

    def __del__(self) -> None:
        if getattr(self, "_open", None) and self._open[0] == os.getpid():
            for fds in self._open[1].values():
                for fd in fds:
                    os.close(fd)

    def lengths(self, field: str) -> np.ndarray:
        """Each example's number of tokens in ``field`` (int32), from the offsets read, not
        mapped (a mapping would keep every page of them in the process)."""
        return np.diff(np.fromfile(self.folder / f"{field}.offsets", np.int64)).astype(np.int32)

    @classmethod
    def cached(cls, folder: str | Path, build) -> TokenStore:
        """The store at ``folder``, mapped; if it is missing, ``build(folder)`` makes it (with
        ``write``), one process at a time: the others wait, then map what it wrote."""
        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            with open(folder.parent / f".{folder.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the process dies, too
                if not (folder / "meta.json").is_file():
                    build(folder)
        return cls(folder)


def write(folder: Path, fields: Sequence[str], examples: Iterable[Sequence[Sequence[int]]],
          vocab_size: int, files: dict[str, bytes] | None = None,
          meta: dict | None = None) -> None:
    """Write ``examples`` (one id sequence per field each) as the store at ``folder``, with
    ``files`` (name -> bytes) beside them: streamed into a temporary folder, renamed into
    place. Call it under ``TokenStore.cached``'s lock, which makes removing a killed build's
    leftovers safe."""
    for stale in folder.parent.glob(f".{folder.name}.*.part"):
        shutil.rmtree(stale)
    tmp = folder.parent / f".{folder.name}.{secrets.token_hex(4)}.part"
    tmp.mkdir()
    try:
        dtype = id_dtype(vocab_size)
        n, ends = _write_fields(tmp, fields, examples, dtype)
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        (tmp / "meta.json").write_text(json.dumps(
            {"format": FORMAT, "fields": list(fields), "dtype": dtype.name, "examples": n,
             "tokens": ends, "vocab_size": vocab_size, **(meta or {})}, indent=1))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_fields(folder: Path, fields: Sequence[str], examples,
                  dtype: np.dtype) -> tuple[int, dict[str, int]]:
    """Stream the examples into ``<field>.ids`` and ``<field>.offsets``; their count and
    each field's number of tokens."""
    outs = {f: (open(folder / f"{f}.ids", "wb"), open(folder / f"{f}.offsets", "wb"))
            for f in fields}
    ends = dict.fromkeys(fields, 0)
    buffers: dict[str, list] = {f: [] for f in fields}
    n = 0
    try:
        for f in fields:
            np.zeros(1, np.int64).tofile(outs[f][1])

        def flush() -> None:
            for f in fields:
                if not buffers[f]:
                    continue
                lengths = np.fromiter((len(s) for s in buffers[f]), np.int64, len(buffers[f]))
                np.fromiter((i for s in buffers[f] for i in s), dtype,
                            int(lengths.sum())).tofile(outs[f][0])
                (ends[f] + np.cumsum(lengths)).tofile(outs[f][1])
                ends[f] += int(lengths.sum())
                buffers[f].clear()

        for example in examples:
            for f, seq in zip(fields, example, strict=True):
                buffers[f].append(seq)
            n += 1
            if n % 65536 == 0:
                flush()
        flush()
    finally:
        for ids, offsets in outs.values():
            ids.close()
            offsets.close()
    return n, ends


def _map(path: Path, dtype) -> np.ndarray:
    """The file as a read-only array (an empty file as an empty array: mmap cannot map it)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r")
