"""Labelled sentences: SST-2 (GLUE TSV), SST-5 (PTB trees), MR, and the user's TSV/JSONL files.

Readers keep the text's case; lower-casing is the caller's choice. Every format error names
the file, the 1-based line number and the bad value.
"""
from __future__ import annotations

import gzip

import json
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from .cache import dataset_file


class Example(NamedTuple):
    """One labelled text; the label stays a string and the task maps it to an id."""
    tokens: list[str]
    label: str


# Penn Treebank's conventions, which SST, GLUE and MR follow: clitics and punctuation are
# tokens of their own (don't -> do n't, it's -> it 's, great! -> great !); hyphenated words
# and numbers (state-of-the-art, 3.5), abbreviations (mr., u.s.), bracket tokens (-lrb-) and
# runs of one punctuation mark (``, '', ..., --) stay whole
TREEBANK = re.compile(r"-[lr][rcs]b-|(?:mrs?|ms|dr|st|jr|vs|etc)\.|(?:\w\.){2,}|n't\b"
                      r"|'(?:s|re|ve|ll|d|m|em)\b|\w+(?=n't\b)|\w+(?:[-.]\w+)*|([^\w\s])\1*",
                      re.IGNORECASE)
TOKENIZERS = ("simple", "whitespace")


def tokenize(text: str, lower: bool = True, tokenizer="whitespace") -> list[str]:
    """``whitespace``: the text's own tokens (SST, GLUE and MR text is already tokenized);
    ``simple``: also Penn Treebank's splits, so text as people type it ("Great!", "isn't")
    meets the tokens of such training data; a sentencepiece model (``splitter``): its
    pieces."""
    text = text.lower() if lower else text
    if not isinstance(tokenizer, str):  # a sentencepiece model
        return tokenizer.encode(text, out_type=str)
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS} or "
                         f"give a sentencepiece .model file")
    if tokenizer == "whitespace":
        return text.split()
    return [m.group(0) for m in TREEBANK.finditer(text)]


def splitter(tokenizer: str, proto: bytes | None = None):
    """What ``tokenize`` takes for a ``tokenizer`` setting: simple or whitespace by name, or
    a sentencepiece model from its bytes (``proto``, as a checkpoint keeps it) or from the
    ``.model`` file the setting names."""
    if tokenizer in TOKENIZERS:
        return tokenizer
    if proto is None:
        if not Path(tokenizer).is_file():
            tokenize("", tokenizer=tokenizer)  # names the choices
        proto = Path(tokenizer).read_bytes()
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except Exception as e:  # sentencepiece's own message, whatever its type
        raise ValueError(f"{tokenizer}: not a sentencepiece model ({e})") from None


def tokenizer_state(tokenizer: str, split) -> dict:
    """What a checkpoint keeps of a tokenizer: its name, or a sentencepiece model's bytes
    (``split``: what ``splitter`` gave for the setting ``tokenizer``)."""
    if isinstance(split, str):
        return {"tokenizer": tokenizer}
    return {"tokenizer": "sentencepiece", "sentencepiece": split.serialized_model_proto()}


def splitter_of(artifacts: dict):
    """The ``splitter`` a checkpoint's artifacts keep (older ones: whitespace)."""
    return splitter(artifacts.get("tokenizer", "whitespace"), artifacts.get("sentencepiece"))


def text_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without end of line) of a text file, gzipped if its name
    ends in .gz; decoded line by line so that a bad byte is reported with its line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: byte {raw[e.start]:#04x} at column "
                                 f"{e.start + 1} is not valid {encoding}") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a BOM left by some editors
            yield lineno, line.rstrip("\r\n")


def _example(path: Path, lineno: int, text: str, label: str) -> Example:
    tokens = tokenize(text, lower=False)
    if not tokens:
        raise ValueError(f"{path}:{lineno}: empty text {text!r}")
    if not label.strip():
        raise ValueError(f"{path}:{lineno}: empty label {label!r}")
    return Example(tokens, label.strip())


def _column(path: Path, lineno: int, header: list[str] | None, column: str | int) -> int:
    if isinstance(column, int):
        return column
    if header is None:
        raise ValueError(f"{path}:{lineno}: column {column!r} given by name, but header=False")
    if column not in header:
        raise ValueError(f"{path}:{lineno}: no column {column!r} in the header {header}")
    return header.index(column)


def read_labelled_tsv(path: str | Path, text_column: str | int, label_column: str | int,
                      header: bool = True, encoding: str = "utf-8") -> list[Example]:
    """Examples from a tab-separated file; columns by header name or 0-based index.

    Blank lines are skipped and trailing whitespace ignored; every other row must have the
    header's (or the first row's) column count and a non-empty text and label.
    """
    path = Path(path)
    names, width, text_i, label_i, out = None, None, None, None, []
    for lineno, line in text_lines(path, encoding):
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")
        if width is None:  # the first non-blank line fixes the column count
            width = len(fields)
            names = fields if header else None
            text_i, label_i = (_column(path, lineno, names, c) for c in (text_column, label_column))
            for c, i in ((text_column, text_i), (label_column, label_i)):
                if not 0 <= i < width:
                    raise ValueError(f"{path}:{lineno}: column {c!r} is outside the {width} "
                                     "columns")
            if header:
                continue
        if len(fields) != width:
            raise ValueError(f"{path}:{lineno}: expected {width} tab-separated columns, found "
                             f"{len(fields)}: {line[:80]!r}")
        out.append(_example(path, lineno, fields[text_i], fields[label_i]))
    if not out:
        what = "only a header" if width else "empty"
        raise ValueError(f"{path}:1: no data rows (the file is {what})")
    return out


def jsonl_objects(path: str | Path, keys: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is
    not an object holding all ``keys`` is a ValueError naming the file and line."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: bad JSON ({e.msg} at column {e.colno}): "
                             f"{line[:80]!r}") from None
        if not isinstance(row, dict) or not set(keys) <= row.keys():
            raise ValueError(f"{path}:{lineno}: expected an object with keys "
                             f"{', '.join(map(repr, keys))}: {line[:80]!r}")
        yield lineno, row


def read_labelled_jsonl(path: str | Path, text_column: str = "text",
                        label_column: str = "label") -> list[Example]:
    """Examples from JSON lines, one object per line holding the text and label keys."""
    path, out = Path(path), []
    for lineno, row in jsonl_objects(path, (text_column, label_column)):
        if not isinstance(row[text_column], str):
            raise ValueError(f"{path}:{lineno}: {text_column!r} must be a string, got "
                             f"{row[text_column]!r}")
        out.append(_example(path, lineno, row[text_column], str(row[label_column])))
    if not out:
        raise ValueError(f"{path}:1: no data rows (the file is empty)")
    return out


_TREE_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{",
                "-RCB-": "}"}


def _parse_tree(line: str) -> tuple[str, list[str]]:
    """(root label, leaves) of one PTB tree such as ``(3 (2 It) (4 (2 's) (3 fine)))``."""
    stack: list[str | None] = []  # labels of the open nodes; None until the label is read
    root, leaves = None, []
    for tok in _TREE_TOKEN.findall(line):
        if tok == "(":
            if root is not None and not stack:
                raise ValueError("text after the root node closed")
            stack.append(None)
        elif tok == ")":
            if not stack:
                raise ValueError("unbalanced: a ')' closes no node")
            if stack.pop() is None:
                raise ValueError("a node without a label")
        elif not stack:
            raise ValueError(f"{tok!r} outside any node")
        elif stack[-1] is None:
            stack[-1] = tok
            root = tok if root is None else root
        else:
            leaves.append(_PTB_ESCAPES.get(tok, tok))
    if stack:
        raise ValueError(f"unbalanced: {len(stack)} '(' left open")
    if root is None or not leaves:
        raise ValueError("no tree on the line")
    return root, leaves


def read_sst_trees(path: str | Path, fine_grained: bool) -> list[Example]:
    """One example per PTB tree line: the leaves, and the root's sentiment label.

    ``fine_grained`` keeps the five labels "0".."4"; otherwise neutral ("2") trees are dropped
    and 0, 1 -> "0", 3, 4 -> "1" (the binary SST-2 sentence task).
    """
    path, out = Path(path), []
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            label, leaves = _parse_tree(line)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: malformed tree, {e}: {line[:80]!r}") from None
        if label not in ("0", "1", "2", "3", "4"):
            raise ValueError(f"{path}:{lineno}: root label {label!r} is not one of 0..4")
        if not fine_grained:
            if label == "2":
                continue
            label = "0" if label in ("0", "1") else "1"
        out.append(Example(leaves, label))
    if not out:
        raise ValueError(f"{path}:1: no trees (the file is empty)")
    return out


def read_mr(folder: str | Path) -> list[Example]:
    """The 5,331 positive ("1") then 5,331 negative ("0") sentences of rt-polaritydata.

    The files hold raw single-byte (cp1252/latin-1) text; latin-1 decodes every byte.
    """
    out = []
    for suffix, label in (("pos", "1"), ("neg", "0")):
        path = Path(folder) / f"rt-polarity.{suffix}"
        out += [_example(path, n, line, label) for n, line in text_lines(path, "latin-1")
                if line.strip()]
    return out


def split_examples(examples: Sequence, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> tuple[list, list, list]:
    """Seeded shuffle, then (train, val, test) of about ``fractions`` of the examples each."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got "
                         f"{tuple(fractions)}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_train = round(len(shuffled) * fractions[0])
    n_val = round(len(shuffled) * fractions[1])
    return (shuffled[:n_train], shuffled[n_train:n_train + n_val],
            shuffled[n_train + n_val:])


def kfold(examples: Sequence, k: int = 10, fold: int = 0, seed: int = 0) -> tuple[list, list]:
    """(train, test) for fold ``fold`` of a seeded ``k``-fold split; the k test parts
    partition the examples and differ in size by at most one."""
    if not 2 <= k <= len(examples):
        raise ValueError(f"k must be in 2..{len(examples)} (the number of examples), got {k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in 0..{k - 1}, got {fold}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    lo, hi = len(shuffled) * fold // k, len(shuffled) * (fold + 1) // k
    return shuffled[:lo] + shuffled[hi:], shuffled[lo:hi]


SENTIMENT = ("sst2", "sst5", "mr")


def load_sentiment(name: str, root: Path | None = None, fold: int | None = None,
                   seed: int = 0) -> dict[str, list[Example]]:
    """{"train", "val", "test"} examples of a standard sentiment dataset.

    sst2: GLUE train (phrases and sentences) and dev, and the labelled sentence-level test.
    sst5: the fine-grained PTB trees. mr: a seeded 80/10/10 split, or with ``fold`` the
    10-fold cross-validation: test = that fold, val = a seeded 10% of the rest.
    Missing files are downloaded or named in a FileNotFoundError (``dataset_file``).
    """
    if name not in SENTIMENT:
        raise ValueError(f"unknown sentiment dataset {name!r}; known: {', '.join(SENTIMENT)}")
    if fold is not None and name != "mr":
        raise ValueError(f"fold={fold} is only for mr (no official split); {name} has one")
    if name == "sst2":
        def tsv(rel: str, text_column: str) -> list[Example]:
            return read_labelled_tsv(dataset_file("sst2", rel, root), text_column, "label")
        return {"train": tsv("train.tsv", "sentence"), "val": tsv("dev.tsv", "sentence"),
                "test": tsv("test_labeled_sentences.tsv", "content")}
    if name == "sst5":
        def trees(split: str) -> list[Example]:
            return read_sst_trees(dataset_file("sst", f"trees/{split}.txt", root), True)
        return {"train": trees("train"), "val": trees("dev"), "test": trees("test")}
    folder = dataset_file("mr", "rt-polarity.pos", root).parent
    dataset_file("mr", "rt-polarity.neg", root)
    examples = read_mr(folder)
    if fold is None:
        train, val, test = split_examples(examples, seed=seed)
    else:
        rest, test = kfold(examples, k=10, fold=fold, seed=seed)
        train, val, _ = split_examples(rest, (0.9, 0.1, 0.0), seed=seed)
    return {"train": train, "val": val, "test": test}


def read_user_sentiment(path: str | Path, text_column: str = "text",
                        label_column: str = "label") -> list[Example]:
    """One split of the user's: TSV with a header naming the two columns, or JSON lines (a
    path ending in .jsonl) with those keys."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file {path}")
    if str(path).endswith(".jsonl"):
        return read_labelled_jsonl(path, text_column, label_column)
    return read_labelled_tsv(path, text_column, label_column)


def load_user_sentiment(train: str | Path, val: str | Path, test: str | Path | None = None,
                        text_column: str = "text",
                        label_column: str = "label") -> dict[str, list[Example]]:
    """{"train", "val"[, "test"]} examples from the user's files (``read_user_sentiment``)."""
    return {split: read_user_sentiment(path, text_column, label_column)
            for split, path in (("train", train), ("val", val), ("test", test))
            if path is not None}
