"""Parallel text: Multi30k task 1 and the user's corpora (two aligned files, TSV or JSONL).

Readers return ``(source, target)`` pairs of raw strings: tokenization is the subword model's
job, and BLEU compares against these raw references. Every format error names the file and
the 1-based line.
"""
from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from .cache import dataset_file, derived_root
from .classification import pad
from .module import SplitDataModule
from .store import TokenStore, content_key, write
from .subword import BOS, EOS, PAD, UNK, Subwords
from .text import jsonl_objects, text_lines
from .words import Words, tokenizer_from_artifacts

log = logging.getLogger(__name__)

Pair = tuple[str, str]
MULTI30K_LANGS = ("de", "en")
MULTI30K_TESTS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")


def _pair(src: str, tgt: str, where: tuple[str, str]) -> Pair | None:
    """The stripped pair; None when both sides are blank (a trailing empty line, as in the
    WMT16 archives); a ValueError naming ``where[side]`` when only one side is."""
    src, tgt = src.strip(), tgt.strip()
    if not src and not tgt:
        return None
    for text, place in ((src, where[0]), (tgt, where[1])):
        if not text:
            raise ValueError(f"{place}: empty line on one side of a pair "
                             f"(the other side reads {(src or tgt)[:60]!r})")
    return src, tgt


def aligned_pairs(src_path: str | Path, tgt_path: str | Path) -> Iterator[Pair]:
    """Pairs from two line-aligned files (plain or .gz): line n of one translates line n of
    the other."""
    src_lines, tgt_lines = text_lines(src_path), text_lines(tgt_path)
    while True:
        a, b = next(src_lines, None), next(tgt_lines, None)
        if a is None or b is None:
            if a is not None or b is not None:
                longer, shorter, (n, _) = (src_path, tgt_path, a) if b is None else (
                    tgt_path, src_path, b)
                raise ValueError(f"{longer}:{n}: {shorter} has only {n - 1} lines; the files "
                                 "must be line-aligned")
            break
        pair = _pair(a[1], b[1], (f"{src_path}:{a[0]}", f"{tgt_path}:{b[0]}"))
        if pair:
            yield pair


def tsv_pairs(path: str | Path, src_column: str | int = "src",
              tgt_column: str | int = "tgt") -> Iterator[Pair]:
    """Pairs from tab-separated rows. Columns given by name read the first line as a
    header; 0-based indices mean the file has none, and a first row that reads as the
    default header (``src``, ``tgt``) is then an error, not a pair (the indices apply to
    every split, and one split's file may have a header)."""
    path, columns = Path(path), None
    by_name = isinstance(src_column, str) or isinstance(tgt_column, str)
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if columns is None:
            columns = _columns(path, lineno, fields if by_name else None, src_column,
                               tgt_column)
            if by_name:
                continue
            if [f.strip() for f in fields[:2]] == ["src", "tgt"]:
                raise ValueError(f"{path}:{lineno}: this row is a header ({line.strip()!r}), but "
                                 f"the columns are given by index ({src_column}, {tgt_column}), "
                                 f"which read files without one: name the columns "
                                 f"(data.src_column=src data.tgt_column=tgt) or drop the header")
        if max(columns) >= len(fields):
            raise ValueError(f"{path}:{lineno}: expected at least {max(columns) + 1} "
                             f"tab-separated columns, found {len(fields)}: {line[:80]!r}")
        here = f"{path}:{lineno}"
        pair = _pair(fields[columns[0]], fields[columns[1]], (here, here))
        if pair:
            yield pair


def _columns(path: Path, lineno: int, header: list[str] | None,
             *columns: str | int) -> tuple[int, ...]:
    if header is None:
        return columns
    for c in columns:
        if c not in header:
            raise ValueError(f"{path}:{lineno}: no column {c!r} in the header {header}")
    return tuple(header.index(c) for c in columns)


def jsonl_pairs(path: str | Path, src_column: str = "src",
                tgt_column: str = "tgt") -> Iterator[Pair]:
    """Pairs from JSON lines, one object per line holding both keys."""
    for lineno, row in jsonl_objects(path, (src_column, tgt_column)):
        here = f"{path}:{lineno}"
        pair = _pair(str(row[src_column]), str(row[tgt_column]), (here, here))
        if pair:
            yield pair


def split_files(spec: str | Path | list | tuple) -> list[Path]:
    """The files of one split of the user's corpus: ``[source file, target file]``, or one."""
    if isinstance(spec, (str, Path)):
        return [Path(spec)]
    if len(spec) != 2:  # a list, or Hydra's ListConfig
        raise ValueError(f"expected [source file, target file], got {list(spec)}")
    return [Path(p) for p in spec]


def iter_user_pairs(spec: str | Path | list | tuple, src_column: str | int = "src",
                    tgt_column: str | int = "tgt") -> Iterator[Pair]:
    """One split of the user's corpus, streamed: ``[source file, target file]`` (aligned
    lines), or a single .jsonl file, or a single TSV file (any other name); a split without
    a pair is an error."""
    files = split_files(spec)
    if len(files) == 2:
        pairs = aligned_pairs(*files)
    elif files[0].name.endswith((".jsonl", ".jsonl.gz")):
        pairs = jsonl_pairs(files[0], str(src_column), str(tgt_column))
    else:
        pairs = tsv_pairs(files[0], src_column, tgt_column)
    return _nonempty(pairs, files[0])


def _nonempty(pairs: Iterator[Pair], path) -> Iterator[Pair]:
    empty = True
    for pair in pairs:
        empty = False
        yield pair
    if empty:
        raise ValueError(f"{path}:1: no sentence pairs (the file is empty)")


def read_user_pairs(spec, src_column: str | int = "src",
                    tgt_column: str | int = "tgt") -> list[Pair]:
    """``iter_user_pairs`` as a list."""
    return list(iter_user_pairs(spec, src_column, tgt_column))


def read_aligned(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    return list(_nonempty(aligned_pairs(src_path, tgt_path), src_path))


def read_tsv_pairs(path: str | Path, src_column: str | int = "src",
                   tgt_column: str | int = "tgt") -> list[Pair]:
    return list(_nonempty(tsv_pairs(path, src_column, tgt_column), path))


def read_jsonl_pairs(path: str | Path, src_column: str = "src",
                     tgt_column: str = "tgt") -> list[Pair]:
    return list(_nonempty(jsonl_pairs(path, src_column, tgt_column), path))


def load_multi30k(src_lang: str = "de", tgt_lang: str = "en",
                  test_set: str = "test_2016_flickr",
                  root: Path | None = None) -> dict[str, list[Pair]]:
    """Multi30k task 1: {"train" (29,000), "val" (1,014), "test"} pairs in the direction
    src_lang -> tgt_lang, read from the raw .gz files (fetched if missing)."""
    if {src_lang, tgt_lang} != set(MULTI30K_LANGS):
        raise ValueError(f"Multi30k task 1 pairs de and en: got src_lang={src_lang!r}, "
                         f"tgt_lang={tgt_lang!r}")
    if test_set not in MULTI30K_TESTS:
        raise ValueError(f"test_set must be one of {MULTI30K_TESTS}, got {test_set!r}")

    def split(name: str) -> list[Pair]:
        return read_user_pairs(multi30k_files(name, src_lang, tgt_lang, root))
    return {"train": split("train"), "val": split("val"), "test": split(test_set)}


def multi30k_files(split: str, src_lang: str = "de", tgt_lang: str = "en",
                   root: Path | None = None) -> list[Path]:
    """A Multi30k split's [source file, target file] (fetched if missing)."""
    return [dataset_file("multi30k", f"raw/{split}.{lang}.gz", root)
            for lang in (src_lang, tgt_lang)]


Item = tuple[int, list[int], list[int], str]  # (index in split, source ids, target ids, ref)


class TranslationData(SplitDataModule):
    """Multi30k (``dataset: multi30k``, either direction) or your ``files`` ({train, val,
    test}: each ``[source file, target file]``, a TSV or a JSONL file; test may be left out),
    tokenized into subword units learnt on the training split (one ``joint`` model or one per
    side).

    Batches: ``src`` (B, S), ``src_lengths`` (B,), ``tgt_in`` (B, T) = <s> y,
    ``tgt_out`` (B, T) = y </s>, ``tgt_lengths`` (B,) counting </s>, ``index`` (B,) each
    pair's position in its split, and ``ref``, the raw target texts that BLEU scores against.
    Training pairs longer than ``max_len`` subwords on either side are left out.
    """

    DATASETS = ("multi30k",)
    task, plain = "translation", ("src_lang", "tgt_lang")
    predictor = "Transducer"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "multi30k", files: dict | None = None,
                 src_lang: str = "de", tgt_lang: str = "en",
                 test_set: str = "test_2016_flickr", src_column: str | int = "src",
                 tgt_column: str | int = "tgt", vocab_size: int = 8000,
                 model_type: str = "bpe", joint: bool = True, character_coverage: float = 1.0,
                 max_len: int | None = 100, sample_sentences: int = 1_000_000,
                 batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__(dataset, files, f"give either dataset={self.DATASETS[0]} or "
                                         "files={train, val, test}")
        if dataset not in (None, *self.DATASETS):
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(self.DATASETS)}")
        self.test_set = test_set
        self.src_lang, self.tgt_lang, self.columns = src_lang, tgt_lang, (src_column, tgt_column)
        self.subword_options = {"vocab_size": vocab_size, "model_type": model_type,
                                "joint": joint, "character_coverage": character_coverage}
        self.max_len, self.batch_size, self.num_workers = max_len, batch_size, num_workers
        self.sample_sentences = sample_sentences
        self.tokenizer: Subwords | Words | None = None

    def read_file(self, spec, split: str) -> list[Pair]:
        return read_user_pairs(spec, *self.columns)

    # -- the training split in a token store (seqkit.data.store) -----------------------------
    def split(self, name: str):
        """As ``SplitDataModule.split``, but the training split and the tokenizer come from
        the token store, built on first use (``prepare_data``)."""
        if "train" not in self.splits and (name == "train" or not self.fitted):
            tokenizer, self.splits["train"] = self._from_store(self.prepare_data())
            if not self.fitted:
                self.tokenizer, self.fitted = tokenizer, True
        return super().split(name)

    def read(self, split: str) -> list[Pair]:
        if self.dataset is not None:  # one split, not all three
            name = {"val": "val", "test": self.test_set}[split]
            return read_user_pairs(multi30k_files(name, self.src_lang, self.tgt_lang))
        return super().read(split)

    def prepare_data(self) -> TokenStore:
        """The training split's token store, built if the derived cache lacks it (Lightning
        calls this on one process per node; the others wait, then map the same files)."""
        files, source = self._train_source()
        options = {"store": self.task, **self._store_options(), "columns": repr(self.columns)}

        def build(folder: Path) -> None:
            start, counts = time.perf_counter(), {"read": 0, "kept": 0}
            fields, examples, tokenizer_files, top = self._examples(source, counts)
            write(folder, fields, examples, top, files=tokenizer_files,
                  meta={"inputs": [str(f) for f in files], **options})
            log.info("token store %s: %d training examples of %d read (max_len=%s) in %.1f s",
                     folder, counts["kept"], counts["read"], self.max_len,
                     time.perf_counter() - start)

        return TokenStore.cached(derived_root() / "stores" / content_key(files, options), build)

    def _train_source(self) -> tuple[list[Path], object]:
        """The training files (what the store's key reads) and the spec the reader takes."""
        if self.files is not None:
            return split_files(self.files["train"]), self.files["train"]
        files = multi30k_files("train", self.src_lang, self.tgt_lang)
        return files, files

    def _store_options(self) -> dict:
        return {**self.subword_options, "max_len": self.max_len,
                "sample_sentences": self.sample_sentences}

    def _examples(self, source, counts: dict):
        """The store's fields, its examples (a stream), the tokenizer's files and the
        largest id + 1: the subword model learns from a sample, then encodes every pair
        within ``max_len``, in chunks."""
        sample = reservoir(iter_user_pairs(source, *self.columns), self.sample_sentences)
        tokenizer = Subwords.learn([s for s, _ in sample], [t for _, t in sample],
                                   **self.subword_options)
        del sample

        def pairs():
            stream = iter_user_pairs(source, *self.columns)
            for chunk in iter(lambda: list(itertools.islice(stream, 8192)), []):
                counts["read"] += len(chunk)
                src = tokenizer.encode_src([s for s, _ in chunk])
                tgt = tokenizer.encode_tgt([t for _, t in chunk])
                for s, t in zip(src, tgt):
                    s = s or [UNK]  # text that normalizes to nothing still needs a position
                    if self.max_len is None or max(len(s), len(t) + 1) <= self.max_len:
                        counts["kept"] += 1
                        yield s, t
        return (("src", "tgt"), pairs(),
                {f"{side}.model": p for side, p in tokenizer.protos.items() if p},
                max(tokenizer.sizes()))

    def _from_store(self, store: TokenStore):
        """The tokenizer a store holds, and its examples as the training split's items."""
        protos = [store.folder / f"{side}.model" for side in ("src", "tgt")]
        return Subwords(*(p.read_bytes() for p in protos if p.is_file())), StoredPairs(store)

    def lengths(self, split: str):
        items = self.split(split)
        if isinstance(items, StoredPairs):
            return items.lengths()
        return super().lengths(split)

    def fit(self, train: list[Pair]) -> None:
        sources, targets = zip(*train)
        self.tokenizer = Subwords.learn(sources, targets, **self.subword_options)

    def restore(self, artifacts: dict) -> None:
        super().restore(artifacts)
        self.tokenizer = tokenizer_from_artifacts(artifacts)

    def encode(self, examples: list, split: str) -> list:
        """A split's items: training items longer than max_len left out, the others sorted by
        length (decoding sorted batches pads less; ``index`` restores the order)."""
        items = self.to_items(examples, split)
        return self._drop_long(items) if split == "train" else sorted(items, key=self.length)

    def to_items(self, pairs: list[Pair], split: str) -> list[Item]:
        src = self.tokenizer.encode_src([s for s, _ in pairs])
        tgt = self.tokenizer.encode_tgt([t for _, t in pairs])
        # text that normalizes to nothing (zero-width characters) still needs one position
        return [(i, s or [UNK], t, ref)
                for i, (s, t, (_, ref)) in enumerate(zip(src, tgt, pairs))]

    def _drop_long(self, items: list[Item]) -> list[Item]:
        if self.max_len is None:
            return items
        kept = [it for it in items if self.longest(it) <= self.max_len]
        if len(kept) < len(items):
            log.info("left out %d of %d training pairs longer than max_len=%d tokens",
                     len(items) - len(kept), len(items), self.max_len)
        return kept

    def longest(self, item: Item) -> int:
        """What ``max_len`` bounds: the longer side, the target with its </s>."""
        return max(len(item[1]), len(item[2]) + 1)

    def length(self, item: Item) -> int:
        return len(item[1]) + len(item[2])

    def collate(self, items: list[Item]) -> dict:
        return {**pad_sources([it[1] for it in items]), **pad_targets([it[2] for it in items]),
                "index": torch.tensor([it[0] for it in items]), "ref": [it[3] for it in items]}

    def dims(self) -> dict[str, int]:
        src_size, tgt_size = self.tokenizer.sizes()
        return {"src_vocab_size": src_size, "tgt_vocab_size": tgt_size,
                "tokens": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS}}

    def artifacts(self) -> dict:
        """What translating from a checkpoint needs: the subword models themselves."""
        return {"task": self.task, "tokenizer": self.tokenizer.state_dict(),
                "src_lang": self.src_lang, "tgt_lang": self.tgt_lang}


class StoredPairs:
    """A token store's pairs as a split's items: ``(index, source ids, target ids, None)``
    (no raw reference: training scores no BLEU)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> Item:
        src, tgt = self.store[i]
        return i, src, tgt, None

    def lengths(self) -> torch.Tensor:
        """Each pair's source plus target length, as ``TranslationData.length``."""
        return torch.from_numpy(self.store.lengths("src") + self.store.lengths("tgt"))


def reservoir(items: Iterable, size: int, seed: int = 0) -> list:
    """A uniform sample of ``size`` items from a stream of any length, in one pass and
    ``size`` items of memory (``size`` 0: all of them); all of a shorter stream, in order."""
    if size <= 0:
        return list(items)
    rng, kept = random.Random(seed), []
    for n, item in enumerate(items):
        if n < size:
            kept.append(item)
        elif (j := rng.randrange(n + 1)) < size:
            kept[j] = item
    return kept


def pad_sources(seqs: list[list[int]]) -> dict[str, torch.Tensor]:
    """Source ids -> ``src`` (B, S) padded with <pad>, ``src_lengths`` (B,)."""
    batch = pad(seqs, PAD)
    return {"src": batch["tokens"], "src_lengths": batch["lengths"]}


def pad_targets(seqs: list[list[int]]) -> dict[str, torch.Tensor]:
    """Target ids y -> ``tgt_in`` = <s> y and ``tgt_out`` = y </s> (B, T), ``tgt_lengths``."""
    lengths = torch.tensor([len(t) + 1 for t in seqs])
    tgt_in = torch.full((len(seqs), int(lengths.max())), PAD)
    tgt_out = tgt_in.clone()
    for row, ids in enumerate(seqs):
        y = torch.tensor(ids, dtype=torch.long)
        tgt_in[row, 0], tgt_in[row, 1:len(ids) + 1] = BOS, y
        tgt_out[row, :len(ids)], tgt_out[row, len(ids)] = y, EOS
    return {"tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_lengths": lengths}
