"""Language-model text: one continuous stream of characters or words, cut into parallel rows.

The classic char-rnn layout: the token stream of a split is laid out as ``batch_size`` rows,
each a contiguous stretch of the text, and a batch is the next ``bptt`` columns of every row.
Row i of batch k+1 continues row i of batch k, so the task carries the recurrent state from
one batch to the next (truncated BPTT over the whole stream). Each training epoch starts the
windows at a random offset in [0, bptt), so the cuts fall elsewhere every epoch.

Default data: Tiny Shakespeare, the first 90% of the characters for training and the last 10%
for validation (nanoGPT's split); it has no test split, so the test scores the validation
text. Any UTF-8 text file, or a train/val/test trio of them, can stand in for it.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from .cache import dataset_file, derived_root
from .module import SplitDataModule
from .sampler import epoch_seed
from .store import TokenStore, content_key, write
from .text import splitter, splitter_of, text_lines, tokenize, tokenizer_state
from .vocab import Vocab

log = logging.getLogger(__name__)
EOS = "<eos>"  # word level: the end of a line
# a stream is read in one process (num_workers=0), where its length is exact
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; a bad byte or an empty file is named with file and line."""
    lines = [line for _, line in text_lines(path)]
    if not any(line.strip() for line in lines):
        raise ValueError(f"{path}:1: no text in the file")
    return "\n".join(lines) + "\n"


def tokens(text: str, level: str, tokenizer="whitespace") -> list[str]:
    """Characters, or words with ``<eos>`` closing every line: split on whitespace, or with
    ``tokenizer="simple"`` also at punctuation and clitics as Penn Treebank does ("Romeo!" ->
    Romeo !), or into a sentencepiece model's pieces, case kept
    (``seqkit.data.text.tokenize``)."""
    if level == "char":
        return list(text)
    if level == "word":
        return [w for line in text.splitlines()
                for w in (*tokenize(line, lower=False, tokenizer=tokenizer), EOS)]
    raise ValueError(f"level must be 'char' or 'word', got {level!r}")


def detokenize(pieces: list[str], level: str, marked: bool = False) -> str:
    """The inverse of ``tokens``: characters joined, words spaced with ``<eos>`` as newlines;
    ``marked``: sentencepiece pieces, whose ▁ marks a word's start."""
    if level == "char":
        return "".join(pieces)
    if marked:
        text = "".join("\n" if p == EOS else p for p in pieces).replace("▁", " ")
        return text.replace("\n ", "\n").lstrip(" ")
    return " ".join(pieces).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n") \
        .replace(f"{EOS} ", "\n").replace(EOS, "\n")


class Stream(IterableDataset):
    """Batches of ``{"inputs", "targets"}`` (rows, <= bptt) over a token stream.

    The stream (N,) is cut into ``rows * world_size`` contiguous rows; this process takes
    ``rows`` of them, so under DDP every rank carries its own rows' state. The few tokens
    that do not fill a whole row (fewer than the row count) are left out. ``offset`` makes the
    first window that many columns long (then every window is ``bptt`` long, the last maybe
    shorter), so every column is used once.
    """

    def __init__(self, ids: torch.Tensor, rows: int, bptt: int, rank: int = 0,
                 world_size: int = 1, offset: int = 0) -> None:
        total = rows * world_size
        width = (len(ids) - 1) // total
        if width < 1:
            raise ValueError(f"{len(ids)} tokens are too few for {total} rows")
        take = slice(rank * rows, (rank + 1) * rows)
        self.inputs = ids[:total * width].view(total, width)[take]
        self.targets = ids[1:total * width + 1].view(total, width)[take]
        self.bptt, self.offset = bptt, offset % bptt

    def _starts(self) -> list[int]:
        first = [0] if self.offset else []
        return first + list(range(self.offset, self.inputs.size(1), self.bptt))

    def __len__(self) -> int:
        return len(self._starts())

    def __iter__(self):
        starts = self._starts()
        for start, end in zip(starts, starts[1:] + [self.inputs.size(1)]):  # ids as int64,
            # from a store's narrower dtype too
            yield {"inputs": self.inputs[:, start:end].long(),
                   "targets": self.targets[:, start:end].long()}


class LMData(SplitDataModule):
    """``dataset``: a catalogued text (tinyshakespeare) or null with ``files``: a path (split
    by ``val_fraction``, test = val; reading val or test reads the whole file) or
    ``{train, val[, test]}`` paths (no test split when test is left out). ``level``: char |
    word, words split by ``tokenizer`` (whitespace | simple | a sentencepiece .model file: its
    pieces; stored in the checkpoint, so that a prime is split as the training text was); the
    vocabulary comes from the training text (words seen ``min_freq`` times, at most
    ``max_vocab``), with ``<unk>`` for anything else. ``splits`` (also ``ids``) hold each
    split's token ids (N,)."""

    task, plain = "lm", ("level", "tokenizer")
    predictor = "TextGenerator"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "tinyshakespeare", files: str | dict | None = None,
                 level: str = "char", val_fraction: float = 0.1, batch_size: int = 64,
                 eval_batch_size: int = 16, bptt: int = 128, random_offset: bool = True,
                 min_freq: int = 1, max_vocab: int | None = None,
                 tokenizer: str = "whitespace") -> None:
        super().__init__(dataset, files,
                         "give either dataset=<name> or files=<path or {train, val, test}>")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.splitter = splitter(tokenizer)  # a bad name or file fails here
        tokens("x\n", level, self.splitter)  # and a bad level
        self.level, self.tokenizer, self.val_fraction = level, tokenizer, val_fraction
        self.min_freq, self.max_vocab = min_freq, max_vocab
        self.batch_size, self.eval_batch_size, self.bptt = batch_size, eval_batch_size, bptt
        self.random_offset = random_offset
        self.vocab: Vocab | None = None

    @property
    def ids(self) -> dict[str, torch.Tensor]:
        return self.splits

    # -- the splits in a token store (seqkit.data.store) -------------------------------------
    def split(self, name: str) -> torch.Tensor:
        """A split's ids, mapped from the token store (built on first use: ``prepare_data``)
        with the vocabulary it holds; a restored module reads its test or val text alone."""
        if name not in self.splits and not (self.fitted and name != "train"):
            store = self.prepare_data()
            if not self.fitted:
                self.vocab = Vocab.from_state_dict(json.loads(
                    (store.folder / "vocab.json").read_text()))
                self.fitted = True
            for field in store.fields:
                with warnings.catch_warnings():  # read-only memory: nothing writes to ids
                    warnings.simplefilter("ignore", UserWarning)
                    self.splits[field] = torch.from_numpy(store.ids[field])
            if store.meta["val_fraction"] is not None:  # one text: test = val
                self.splits.setdefault("test", self.splits["val"])
        return super().split(name)

    def _texts(self) -> dict[str, Path]:
        """The files: {split: path}, or {"text": path} for one text cut into train and val."""
        if self.dataset is None and not isinstance(self.files, (str, Path)):
            return {k: Path(v) for k, v in self.files.items() if v is not None}
        if self.dataset not in (None, "tinyshakespeare"):
            raise ValueError(f"unknown text dataset {self.dataset!r}; use files=<path>")
        return {"text": dataset_file("tinyshakespeare", "input.txt") if self.dataset else
                Path(self.files)}

    def prepare_data(self) -> TokenStore:
        """The token store of every split, built if the derived cache lacks it (Lightning
        calls this on one process per node; the others wait, then map the same files)."""
        texts = self._texts()
        options = {"store": "lm", "level": self.level, **{  # a model's bytes, by digest
            k: hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else v
            for k, v in tokenizer_state(self.tokenizer, self.splitter).items()},
                   "min_freq": self.min_freq, "max_vocab": self.max_vocab,
                   "val_fraction": self.val_fraction if "text" in texts else None,
                   "splits": sorted(texts)}

        def build(folder: Path) -> None:
            start = time.perf_counter()
            for path in texts.values():  # (stops at the first line of text)
                if not any(line.strip() for _, line in text_lines(path)):
                    raise ValueError(f"{path}:1: no text in the file")
            parts = self._parts(texts)
            vocab = Vocab.build(self._pieces(*parts["train"]), min_freq=self.min_freq,
                                max_size=self.max_vocab, pad=None)
            streams = {name: (vocab.encode(chunk) for chunk in self._pieces(*part))
                       for name, part in parts.items()}
            write(folder, tuple(streams), itertools.zip_longest(*streams.values(), fillvalue=[]),
                  len(vocab), files={"vocab.json": json.dumps(vocab.state_dict()).encode()},
                  meta={"inputs": [str(p) for p in texts.values()], **options})
            log.info("token store %s: %s in %.1f s", folder, ", ".join(
                f"{name} {n:,} tokens" for name, n in TokenStore(folder).meta["tokens"].items()),
                     time.perf_counter() - start)

        return TokenStore.cached(derived_root() / "stores" / content_key(texts.values(), options),
                                 build)

    def _parts(self, texts: dict[str, Path]) -> dict[str, tuple[Path, int, int | None]]:
        """Each split as (file, first character, end character or None) of its text as
        ``read_text`` gives it: one text is cut at ``val_fraction`` (at a line's end for
        words), as ``read_all`` cuts it."""
        if "text" not in texts:
            return {name: (path, 0, None) for name, path in texts.items()}
        path = texts["text"]
        total = sum(len(line) + 1 for _, line in text_lines(path))
        cut = int(total * (1 - self.val_fraction))
        if self.level == "word":  # after the last line that ends before the cut
            end = last = 0
            for _, line in text_lines(path):
                end += len(line) + 1
                if end > cut:
                    break
                last = end
            cut = last or cut
        return {"train": (path, 0, cut), "val": (path, cut, None)}

    def _pieces(self, path: Path, start: int = 0, stop: int | None = None,
                size: int = 1 << 20):
        """The tokens of characters [start, stop) of a file's text, in chunks of about
        ``size`` characters that end at a line's end (a character cut may fall mid-line)."""
        buffer, length, pos = [], 0, 0
        for _, line in text_lines(path):
            line += "\n"
            piece = line[max(start - pos, 0):None if stop is None else max(stop - pos, 0)]
            pos += len(line)
            if piece:
                buffer.append(piece)
                length += len(piece)
            if length >= size:
                yield tokens("".join(buffer), self.level, self.splitter)
                buffer, length = [], 0
            if stop is not None and pos >= stop:
                break
        if buffer:
            yield tokens("".join(buffer), self.level, self.splitter)

    def read_file(self, path, split: str) -> list[str]:
        return tokens(read_text(path), self.level, self.splitter)

    def read_all(self) -> dict[str, list[str]]:
        """The one text (the dataset's, or files: a path) cut into train and val = test."""
        if self.dataset is None:
            text = read_text(self.files)
        elif self.dataset == "tinyshakespeare":
            text = read_text(dataset_file("tinyshakespeare", "input.txt"))
        else:
            raise ValueError(f"unknown text dataset {self.dataset!r}; use files=<path>")
        cut = int(len(text) * (1 - self.val_fraction))
        if self.level == "word":  # at a line's end, so no word is cut in two
            cut = text.rfind("\n", 0, cut) + 1 or cut
        val = tokens(text[cut:], self.level, self.splitter)
        return {"train": tokens(text[:cut], self.level, self.splitter), "val": val,
                "test": val}

    def fit(self, train: list[str]) -> None:
        self.vocab = Vocab.build([train], min_freq=self.min_freq, max_size=self.max_vocab,
                                 pad=None)

    def restore(self, artifacts: dict) -> None:
        super().restore(artifacts)
        self.vocab = Vocab.from_state_dict(artifacts["vocab"])
        self.splitter = splitter_of(artifacts)

    def encode(self, pieces: list[str], split: str) -> torch.Tensor:
        ids = torch.tensor(self.vocab.encode(pieces))
        log.info("%s (%s level), %s split: %d tokens, %d unknown; vocabulary %d",
                 self.dataset or self.files, self.level, split, len(ids),
                 int((ids == self.vocab.unk_index).sum()), len(self.vocab))
        return ids

    def _stream(self, split: str, rows: int, offset: int = 0) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        ids = self.split(split)
        try:
            stream = Stream(ids, rows, self.bptt, rank, world, offset)
        except ValueError as e:
            name = "batch_size" if split == "train" else "eval_batch_size"
            raise ValueError(f"{self.dataset or self.files} ({split} split): {e} "
                             f"(data.{name} x processes); use fewer rows") from None
        return DataLoader(stream, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        offset = 0
        if self.random_offset:  # the run's seed and the epoch: a resumed run cuts alike
            epoch = self.trainer.current_epoch if self.trainer else 0
            offset = random.Random(epoch_seed(self.shuffle_seed, epoch)).randrange(self.bptt)
        return self._stream("train", self.batch_size, offset)

    def val_dataloader(self) -> DataLoader:
        return self._stream("val", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._stream("test", self.eval_batch_size)

    def dims(self) -> dict:
        return {"vocab_size": len(self.vocab)}

    def artifacts(self) -> dict:
        return {"task": self.task, "level": self.level, "vocab": self.vocab.state_dict(),
                **tokenizer_state(self.tokenizer, self.splitter)}
