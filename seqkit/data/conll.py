"""CoNLL column files for NER: CoNLL-2003, WNUT-17 and the user's own; tag-scheme conversion.

A file holds one token per line, whitespace-separated columns (token first), a blank line
between sentences and optional ``-DOCSTART-`` lines between documents. The tag schemes
(IOB1, IOB2, IOBES) and how spans are read from tags live in ``seqkit.metrics.spans``.
Every format error names the file, the 1-based line number and the bad value.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..metrics.spans import SCHEMES, Span, check_scheme, entities, split_tag, transition_allowed
from .cache import dataset_file
from .text import text_lines  # line by line, so a bad byte is reported with its line

DOCSTART = "-DOCSTART-"
# ASCII whitespace only: str.split() would also cut at U+00A0 and friends, which tweets hold
_SEPARATOR = re.compile(r"[ \t\f\v]+")
_ASCII_SPACE = " \t\f\v"


class Sentence(NamedTuple):
    """One sentence: ``tokens`` and ``tags`` (n each), and ``columns``, every column of the
    file as read (``columns[j][i]`` is column j of token i; ``columns[0]`` is ``tokens``).
    After a scheme conversion ``tags`` are converted while ``columns`` keep the file's tags."""
    tokens: list[str]
    tags: list[str]
    columns: list[list[str]]


def read_conll(path: str | Path, tag_column: int = -1, scheme: str | None = None,
               strict: bool = False, encoding: str = "utf-8") -> list[Sentence]:
    """The sentences of a CoNLL column file, with the tags of column ``tag_column``.

    Blank lines (spaces and tabs only) end sentences; ``-DOCSTART-`` lines are skipped. Every
    other line must have the column count of the first. With ``scheme`` each tag must be O
    or PREFIX-TYPE with a prefix of that scheme; ``strict`` also rejects tags in an order the
    scheme forbids (an IOB2 I-PER after O, an IOBES B-PER not closed by E-PER, ...). Tags are
    not converted. Raises ValueError naming the file and line.
    """
    path = Path(path)
    if scheme is not None:
        check_scheme(scheme)
    elif strict:
        raise ValueError("strict=True checks the tag order of a scheme; give scheme too")
    sentences, rows, width, first = [], [], None, None  # rows: (lineno, fields) so far
    for lineno, line in text_lines(path, encoding):
        fields = _SEPARATOR.split(line.strip(_ASCII_SPACE))
        if fields == [""] or fields[0] == DOCSTART:  # both end the open sentence, if any
            if rows:
                sentences.append(_sentence(path, rows, tag_column, scheme, strict))
                rows = []
            continue
        if width is None:
            width, first = len(fields), lineno
            _check_tag_column(path, lineno, width, tag_column)
        elif len(fields) != width:
            raise ValueError(f"{path}:{lineno}: expected {width} columns as on line {first}, "
                             f"found {len(fields)}: {line[:80]!r}")
        rows.append((lineno, fields))
    if rows:
        sentences.append(_sentence(path, rows, tag_column, scheme, strict))
    if not sentences:
        raise ValueError(f"{path}: no sentences (the file is empty or holds only "
                         f"{DOCSTART} lines)")
    return sentences


def _check_tag_column(path: Path, lineno: int, width: int, tag_column: int) -> None:
    if width < 2:
        raise ValueError(f"{path}:{lineno}: expected a token and a tag column, found {width} "
                         "column")
    if not -width <= tag_column < width or tag_column % width == 0:
        raise ValueError(f"{path}:{lineno}: tag_column={tag_column} is not a column other than "
                         f"the token's (0) among the {width}")


def _sentence(path: Path, rows: list[tuple[int, list[str]]], tag_column: int,
              scheme: str | None, strict: bool) -> Sentence:
    columns = [list(column) for column in zip(*(fields for _, fields in rows))]
    tags = columns[tag_column]
    if scheme is not None:
        _check_tags(path, [lineno for lineno, _ in rows], tags, scheme, strict)
    return Sentence(columns[0], tags, columns)


def _check_tags(path: Path, linenos: list[int], tags: list[str], scheme: str,
                strict: bool) -> None:
    prev = "O"  # a sentence starts as if after O
    for i, (lineno, tag) in enumerate(zip(linenos, tags)):
        try:
            split_tag(tag, scheme)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        if strict and not transition_allowed(prev, tag, scheme):
            where = "start a sentence" if i == 0 else f"follow {prev!r}"
            raise ValueError(f"{path}:{lineno}: tag {tag!r} cannot {where} in {scheme}")
        prev = tag
    if strict and not transition_allowed(prev, "O", scheme):
        raise ValueError(f"{path}:{linenos[-1]}: tag {prev!r} cannot end a sentence in {scheme}")


def _encode(spans: list[Span], length: int, scheme: str) -> list[str]:
    """Tags of ``length`` tokens holding the (non-overlapping, ordered) spans in ``scheme``."""
    tags = ["O"] * length
    last_end, last_type = None, None
    for type_, start, end in spans:
        tags[start:end] = [f"I-{type_}"] * (end - start)
        if scheme == "IOBES":
            if end - start == 1:
                tags[start] = f"S-{type_}"
            else:
                tags[start], tags[end - 1] = f"B-{type_}", f"E-{type_}"
        # IOB1 needs B- only where the entity touches one of its type, IOB2 always
        elif scheme == "IOB2" or (last_end, last_type) == (start, type_):
            tags[start] = f"B-{type_}"
        last_end, last_type = end, type_
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """``tags`` of scheme ``source`` rewritten in ``target``, any pair of SCHEMES.

    The spans are read as conlleval reads them and written back well formed, so
    ``entities(result, target) == entities(tags, source)`` even for ill-formed input.
    """
    return _encode(entities(tags, source), len(tags), check_scheme(target))


def _illegal_transitions(tags: Sequence[str], scheme: str) -> int:
    bounded = ["O", *tags, "O"]  # count starting and ending wrongly too
    return sum(not transition_allowed(a, b, scheme) for a, b in zip(bounded, bounded[1:]))


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """The scheme under which the sentences' tags break the fewest transition rules (sentence
    starts and ends included): IOB1 data opens entities with I-, IOB2 data with B-, IOBES
    data holds E- or S-. Ties, as for all-O data, go to IOB2, then IOBES.

    A few annotation errors thus do not change the answer. Raises ValueError when a tag is
    not O or B-, I-, E-, S- followed by a type.
    """
    counts = {}
    for scheme in ("IOB2", "IOBES", "IOB1"):  # the tie order
        try:
            counts[scheme] = sum(_illegal_transitions(s.tags, scheme) for s in sentences)
        except ValueError:  # a prefix this scheme lacks
            continue
    if not counts:  # so no scheme, not even IOBES, knows some tag: say which
        for s in sentences:
            for tag in s.tags:
                split_tag(tag, "IOBES")
    return min(counts, key=counts.get)


SPLITS = ("train", "val", "test")
# dataset -> (the files' scheme, their relpaths for SPLITS)
NER_DATASETS = {
    "conll2003": ("IOB1", ("eng.train", "eng.testa", "eng.testb")),
    "wnut17": ("IOB2", ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated")),
}


def _converted(sentences: list[Sentence], source: str, target: str) -> list[Sentence]:
    return [s._replace(tags=convert_tags(s.tags, source, target)) for s in sentences]


def load_ner(name: str, scheme: str = "IOBES",
             root: Path | None = None) -> dict[str, list[Sentence]]:
    """{"train", "val", "test"} sentences of CoNLL-2003 (eng.train/testa/testb) or WNUT-17,
    tags converted to ``scheme``; ``columns`` keep the files' tags (and CoNLL's POS and chunk).
    Missing files are downloaded or named in a FileNotFoundError (``dataset_file``).
    """
    if name not in NER_DATASETS:
        raise ValueError(f"unknown NER dataset {name!r}; known: {', '.join(NER_DATASETS)}")
    check_scheme(scheme)
    source, relpaths = NER_DATASETS[name]
    # Not strict: eng.train has two B-MISC right after O (lines 152428, 175436), against
    # IOB1; conlleval reads them as entity starts, and so does the conversion.
    return {split: _converted(read_conll(dataset_file(name, rel, root), scheme=source),
                              source, scheme)
            for split, rel in zip(SPLITS, relpaths)}


def load_user_ner(train: str | Path, val: str | Path, test: str | Path, tag_column: int = -1,
                  scheme_in: str | None = None, scheme: str = "IOBES") -> dict[str, list[Sentence]]:
    """{"train", "val", "test"} sentences from the user's CoNLL column files, tags converted
    from ``scheme_in`` (detected over all three files when None) to ``scheme``."""
    check_scheme(scheme)
    paths = dict(zip(SPLITS, (train, val, test)))
    for path in paths.values():
        if not Path(path).is_file():
            raise FileNotFoundError(f"no file {path}")
    # Unknown scheme: check the tags against the widest prefix set, so a bad one is still
    # reported with its file and line
    raw = {split: read_conll(path, tag_column, scheme_in or "IOBES")
           for split, path in paths.items()}
    source = scheme_in or detect_scheme([s for split in raw.values() for s in split])
    return {split: _converted(sentences, source, scheme) for split, sentences in raw.items()}


__all__ = ["DOCSTART", "NER_DATASETS", "SCHEMES", "SPLITS", "Sentence", "convert_tags",
           "detect_scheme", "load_ner", "load_user_ner", "read_conll"]
