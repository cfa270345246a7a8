"""A token <-> index mapping for words, characters or labels."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence


class Vocab:
    """Maps tokens to indices: specials first (``<pad>`` = 0, ``<unk>`` = 1 by default), then
    the kept tokens by frequency (descending), ties by the token, so a build is deterministic.

    Lower-casing or any other normalisation is the caller's job: the vocab sees tokens as
    given. A character vocabulary is the same class with characters as tokens; a label
    vocabulary passes ``pad=None, unk=None`` so an unknown label raises KeyError.
    """

    def __init__(self, itos: Sequence[str], pad: str | None = "<pad>",
                 unk: str | None = "<unk>") -> None:
        self._itos = list(itos)
        self._stoi = {tok: i for i, tok in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            dupes = sorted(t for t, n in Counter(self._itos).items() if n > 1)
            raise ValueError(f"vocabulary has duplicate tokens {dupes[:10]}")
        for role, tok in (("pad", pad), ("unk", unk)):
            if tok is not None and tok not in self._stoi:
                raise ValueError(f"{role} token {tok!r} is not in the vocabulary")
        self.pad, self.unk = pad, unk

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_freq: int = 1,
              max_size: int | None = None, specials: Sequence[str] = (),
              pad: str | None = "<pad>", unk: str | None = "<unk>") -> Vocab:
        """Count the tokens of ``sequences`` and keep those seen at least ``min_freq`` times.

        The order is ``pad``, ``unk``, then ``specials`` (e.g. ``("<bos>", "<eos>")``), then
        tokens by frequency. ``max_size`` bounds ``len(vocab)``, specials included, so it can
        size an embedding table directly.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        head = list(dict.fromkeys(t for t in (pad, unk, *specials) if t is not None))
        if max_size is not None and max_size < len(head):
            raise ValueError(f"max_size={max_size} leaves no room for the specials {head}")
        counts = Counter(tok for seq in sequences for tok in seq)
        for tok in head:  # a special that occurs in the data still gets one slot, up front
            counts.pop(tok, None)
        kept = sorted((t for t, n in counts.items() if n >= min_freq),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size - len(head)]
        return cls(head + kept, pad=pad, unk=unk)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: str) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        """Index of ``token``; ``unk_index`` for an unknown one (KeyError when there is no unk)."""
        index = self._stoi.get(token)
        if index is not None:
            return index
        if self.unk is None:
            raise KeyError(f"{token!r} is not in the vocabulary, which has no unk token")
        return self._stoi[self.unk]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token sequence -> index list of the same length."""
        return [self[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Index sequence (ints or a 1-D tensor) -> tokens; an index out of range raises."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._itos):
                raise ValueError(f"index {i} is outside the vocabulary of {len(self._itos)}")
            out.append(self._itos[i])
        return out

    @property
    def itos(self) -> list[str]:
        """Index -> token list (a copy)."""
        return list(self._itos)

    @property
    def pad_index(self) -> int | None:
        return None if self.pad is None else self._stoi[self.pad]

    @property
    def unk_index(self) -> int | None:
        return None if self.unk is None else self._stoi[self.unk]

    def state_dict(self) -> dict:
        """Plain lists and strings, so a vocab can ride inside a Lightning checkpoint."""
        return {"itos": list(self._itos), "pad": self.pad, "unk": self.unk}

    @classmethod
    def from_state_dict(cls, state: dict) -> Vocab:
        return cls(state["itos"], pad=state["pad"], unk=state["unk"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, pad={self.pad!r}, unk={self.unk!r})"
