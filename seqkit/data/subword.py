"""Subword units (sentencepiece BPE or unigram) learnt on the training text, kept as bytes.

A ``Subwords`` holds one model shared by both sides (``joint``) or one per side. Its state is
the serialized model protos, so a checkpoint carries its tokenizer and needs no files.
Ids are fixed: <pad> 0, <unk> 1, <s> 2, </s> 3.
"""
from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence

import sentencepiece as spm

from .cache import derived_root

log = logging.getLogger(__name__)
PAD, UNK, BOS, EOS = 0, 1, 2, 3
MODEL_TYPES = ("bpe", "unigram")


def train_sentencepiece(texts: Sequence[str], vocab_size: int, model_type: str = "bpe",
                        character_coverage: float = 1.0, seed_sentences: int = 0) -> bytes:
    """Learn a sentencepiece model on ``texts`` and return its serialized proto.

    ``vocab_size`` is an upper bound (``hard_vocab_limit=False``): a corpus too small for it
    gets the largest vocabulary it supports instead of an error. ``seed_sentences`` > 0
    samples that many sentences for training (0: all of them).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if vocab_size < 8:
        raise ValueError(f"vocab_size must be at least 8 (4 special ids), got {vocab_size}")
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, hard_vocab_limit=False,
        input_sentence_size=seed_sentences, shuffle_input_sentence=seed_sentences > 0,
        minloglevel=2)  # its INFO lines would flood the training log
    return proto.getvalue()


def cached_sentencepiece(texts: Sequence[str], **options) -> bytes:
    """``train_sentencepiece`` through the derived-data cache: the same texts and options
    give the same model (so a resumed run keeps its ids) without training it again."""
    key = hashlib.sha256(repr(sorted(options.items())).encode())
    for text in texts:
        key.update(text.encode("utf-8") + b"\n")
    path = derived_root() / "sentencepiece" / f"{key.hexdigest()[:32]}.model"
    if path.is_file():
        return path.read_bytes()
    proto = train_sentencepiece(texts, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(proto)
    tmp.replace(path)  # atomic: a concurrent run never reads half a model
    return proto


class Subwords:
    """Source and target subword models; ``src`` and ``tgt`` are the same when joint."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None) -> None:
        self.protos = {"src": src_proto, "tgt": tgt_proto}
        self.src = spm.SentencePieceProcessor(model_proto=src_proto)
        self.tgt = self.src if tgt_proto is None else spm.SentencePieceProcessor(
            model_proto=tgt_proto)
        for side, sp in (("src", self.src), ("tgt", self.tgt)):
            ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
            if ids != (PAD, UNK, BOS, EOS):
                raise ValueError(f"{side} sentencepiece model has special ids "
                                 f"(pad, unk, bos, eos) = {ids}; seqkit needs (0, 1, 2, 3)")

    @classmethod
    def learn(cls, src_texts: Sequence[str], tgt_texts: Sequence[str], vocab_size: int = 8000,
              model_type: str = "bpe", joint: bool = True, character_coverage: float = 1.0,
              seed_sentences: int = 0) -> Subwords:
        """Train on the training side(s): one model on both sides' text when ``joint``."""
        options = {"vocab_size": vocab_size, "model_type": model_type,
                   "character_coverage": character_coverage, "seed_sentences": seed_sentences}
        if joint:
            return cls(cached_sentencepiece([*src_texts, *tgt_texts], **options))
        return cls(cached_sentencepiece(src_texts, **options),
                   cached_sentencepiece(tgt_texts, **options))

    @property
    def joint(self) -> bool:
        return self.protos["tgt"] is None

    def sizes(self) -> tuple[int, int]:
        """(source vocabulary size, target vocabulary size)."""
        return self.src.get_piece_size(), self.tgt.get_piece_size()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return self.src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return self.tgt.encode(texts)

    def extend(self, text: str, max_len: int | None = None) -> tuple[list[int], list[str]]:
        """A source's ids, its first ``max_len`` only, and no unknown words (``Words``'
        interface: subwords leave no word unknown to copy)."""
        return self.src.encode(text)[:max_len], []

    def known(self, ids: list[int]) -> list[int]:
        return ids

    def decode_tgt(self, ids: list[list[int]], oovs=None) -> list[str]:
        """Detokenized target text (what BLEU scores): pieces joined, '▁' back to spaces.
        (``oovs``, for ``Words``' interface: subwords leave no word unknown to copy.)"""
        return self.tgt.decode(ids)

    def src_pieces(self, ids: list[int], oovs=None) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: list[int], oovs=None) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def state_dict(self) -> dict:
        return dict(self.protos)

    @classmethod
    def from_state_dict(cls, state: dict) -> Subwords:
        return cls(state["src"], state.get("tgt"))
