"""Word-level tokens for a pointer-generator: one vocabulary for source and target, and each
example's source words outside it numbered after it (See et al. 2017's extended vocabulary),
so that the model can copy a word it has no embedding for and the text comes back.

Ids follow the subword models': <pad> 0, <unk> 1, <s> 2, </s> 3. Same interface as
``Subwords`` (encode_src, decode_tgt, src_pieces, ...) so the seq2seq task takes either.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from .vocab import Vocab

TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


def tokenize(text: str, lower: bool = True) -> list[str]:
    """Words (with inner hyphens, apostrophes and dots: "state-of-the-art", "e.g") and single
    punctuation marks."""
    return TOKEN.findall(text.lower() if lower else text)


class Words:
    """A word vocabulary learnt on the training text, lower-cased (ROUGE compares lower case)."""

    def __init__(self, vocab: Vocab, lower: bool = True) -> None:
        self.vocab, self.lower = vocab, lower

    @classmethod
    def learn(cls, src_texts: Sequence[str], tgt_texts: Sequence[str], max_size: int = 20000,
              min_freq: int = 2, lower: bool = True) -> Words:
        vocab = Vocab.build((tokenize(t, lower) for t in itertools.chain(src_texts, tgt_texts)),
                            min_freq, max_size, specials=("<s>", "</s>"))
        return cls(vocab, lower)

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.lower)

    def sizes(self) -> tuple[int, int]:
        return len(self.vocab), len(self.vocab)

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return [self.vocab.encode(self.tokenize(t)) for t in texts]

    encode_tgt = encode_src

    def extend(self, text: str, max_len: int | None = None) -> tuple[list[int], list[str]]:
        """A source's ids in the extended vocabulary (its j-th distinct unknown word is
        ``len(vocab) + j``), its first ``max_len`` words only, and those unknown words."""
        oovs: dict[str, int] = {}
        ids = []
        for token in self.tokenize(text)[:max_len]:
            i = self.vocab[token]
            if i == self.vocab.unk_index:
                i = len(self.vocab) + oovs.setdefault(token, len(oovs))
            ids.append(i)
        return ids, list(oovs)

    def known(self, ids: list[int]) -> list[int]:
        """Extended ids with the unknown words back to <unk>: what the embedding looks up."""
        return [i if i < len(self.vocab) else self.vocab.unk_index for i in ids]

    def extend_target(self, text: str, oovs: list[str]) -> list[int]:
        """A target's ids where its unknown words found in the source (``oovs``) take their
        extended ids: what a copying model is trained to produce."""
        position = {w: len(self.vocab) + j for j, w in enumerate(oovs)}
        unk = self.vocab.unk_index
        return [position.get(t, unk) if (i := self.vocab[t]) == unk else i
                for t in self.tokenize(text)]

    def tgt_pieces(self, ids: list[int], oovs: Sequence[str] = ()) -> list[str]:
        V = len(self.vocab)
        return [oovs[i - V] if i >= V else self.vocab.itos[i] for i in ids]

    src_pieces = tgt_pieces

    def decode_tgt(self, ids: list[list[int]],
                   oovs: Sequence[Sequence[str]] | None = None) -> list[str]:
        """Output ids (extended ones through each example's ``oovs``) -> space-joined words."""
        oovs = oovs or [()] * len(ids)
        return [" ".join(self.tgt_pieces(row, o)) for row, o in zip(ids, oovs)]

    def state_dict(self) -> dict:
        return {"kind": "words", "vocab": self.vocab.state_dict(), "lower": self.lower}

    @classmethod
    def from_state_dict(cls, state: dict) -> Words:
        return cls(Vocab.from_state_dict(state["vocab"]), state["lower"])


def tokenizer_from_artifacts(artifacts: dict):
    """The ``Words`` or ``Subwords`` a checkpoint stored (under "subwords" before seqkit had
    word tokens)."""
    state = artifacts["tokenizer"] if "tokenizer" in artifacts else artifacts["subwords"]
    if state.get("kind") == "words":
        return Words.from_state_dict(state)
    from .subword import Subwords
    return Subwords.from_state_dict(state)
