"""NER data for Lightning: CoNLL column files -> word, casing, character and tag tensors."""
from __future__ import annotations

import re

import torch
from torch.nn.utils.rnn import pad_sequence

from ..metrics.spans import check_scheme
from .conll import Sentence, convert_tags, detect_scheme, load_ner, read_conll
from .module import SplitDataModule
from .vectors import load_vectors
from .vocab import Vocab

CASES = ("<pad>", "lower", "upper", "title", "numeric", "has_digit", "other")


def word_key(word: str) -> str:
    """What the word embedding sees: lower case, digits as 0 (the casing feature and the
    characters keep what this drops)."""
    return re.sub(r"\d", "0", word.lower())


def casing(word: str) -> int:
    """Index in CASES of the word's shape (Reimers & Gurevych 2017's casing feature)."""
    if word.isdigit():
        return 4
    if any(c.isdigit() for c in word):
        return 5
    if word.islower():
        return 1
    if word.isupper():
        return 2
    return 3 if word[:1].isupper() else 6


class SentenceFeatures:
    """Turns sentences into tensors with the vocabularies built on the training split."""

    def __init__(self, words: Vocab, chars: Vocab, tags: Vocab | None,
                 max_word_len: int = 20) -> None:
        self.words, self.chars, self.tags, self.max_word_len = words, chars, tags, max_word_len

    def encode(self, tokens: list[str], tags: list[str] | None = None) -> dict[str, torch.Tensor]:
        """One sentence of n tokens -> words (n,), cases (n,), chars (n, L), tags (n,)."""
        chars = [self.chars.encode(t[:self.max_word_len]) for t in tokens]
        width = max(len(c) for c in chars)
        out = {"words": torch.tensor(self.words.encode(word_key(t) for t in tokens)),
               "cases": torch.tensor([casing(t) for t in tokens]),
               "chars": torch.tensor([c + [0] * (width - len(c)) for c in chars])}
        if tags is not None:
            out["tags"] = torch.tensor(self.tags.encode(tags))
        return out

    @staticmethod
    def pad(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Pad a list of encoded sentences: words, cases, tags (B, T), chars (B, T, L),
        lengths (B,). Work is per sentence, not per token."""
        batch = {k: pad_sequence([it[k] for it in items], batch_first=True)
                 for k in items[0] if k != "chars"}
        T, L = batch["words"].size(1), max(it["chars"].size(1) for it in items)
        chars = torch.zeros(len(items), T, L, dtype=torch.long)
        for row, it in enumerate(items):
            c = it["chars"]
            chars[row, :c.size(0), :c.size(1)] = c
        batch["chars"] = chars
        batch["lengths"] = torch.tensor([len(it["words"]) for it in items])
        return batch

    def state_dict(self) -> dict:
        return {"words": self.words.state_dict(), "chars": self.chars.state_dict(),
                "tags": self.tags.state_dict(), "max_word_len": self.max_word_len}

    @classmethod
    def from_state_dict(cls, state: dict) -> SentenceFeatures:
        return cls(Vocab.from_state_dict(state["words"]), Vocab.from_state_dict(state["chars"]),
                   Vocab.from_state_dict(state["tags"]), state["max_word_len"])


class UnkSingletons(torch.utils.data.Dataset):
    """Training sentences whose singletons (words seen once in training) become <unk> with
    probability ``p`` each time they are drawn (Lample et al. 2016): <unk> is then learnt from
    the rare words that are most like the unseen words of the test. Draws from torch's
    global generator, which ``seqkit.resume.Resume`` reseeds every epoch."""

    def __init__(self, sentences: list[dict], singleton: torch.Tensor, p: float,
                 unk_index: int) -> None:
        self.sentences, self.singleton, self.p, self.unk_index = sentences, singleton, p, unk_index

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.sentences[index]
        words = item["words"]
        drop = self.singleton[words] & (torch.rand(words.shape) < self.p)
        return {**item, "words": words.masked_fill(drop, self.unk_index)}


class NERData(SplitDataModule):
    """CoNLL-2003 / WNUT-17 by name, or your column ``files`` (train, val, test; test may be
    left out).

    Tags are converted to ``scheme`` (IOBES by default: the CRF then knows where entities end)
    from the files' scheme, detected on the training file. ``vectors``: an optional
    word2vec/GloVe text file, or a catalog name (glove.6B.100d, ...: seqkit.data.vectors),
    whose vectors initialise the embedding (its words join the vocabulary). ``singleton_unk``: the probability with which a word seen once in training
    turns into <unk> each time its sentence is drawn.
    """

    task, plain = "ner", ("scheme", "scheme_in")
    predictor = "Tagger"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "conll2003", files: dict | None = None,
                 tag_column: int = -1, scheme: str = "IOBES", batch_size: int = 32,
                 min_freq: int = 1, max_word_len: int = 20, vectors: str | None = None,
                 singleton_unk: float = 0.0, num_workers: int = 0) -> None:
        super().__init__(dataset, files,
                         "give either dataset=<conll2003|wnut17> or files={train, val, test}")
        self.tag_column, self.scheme = tag_column, check_scheme(scheme)
        self.batch_size, self.min_freq, self.max_word_len = batch_size, min_freq, max_word_len
        self.vectors, self.singleton_unk, self.num_workers = vectors, singleton_unk, num_workers
        self.features: SentenceFeatures | None = None
        self.scheme_in: str | None = None  # the files' tag scheme
        self._vector_table: dict | None = None

    def read_file(self, path, split: str) -> list[Sentence]:
        # until the scheme is known, check the tags against the widest prefix set, so that a
        # bad one is still reported with its file and line
        sentences = read_conll(path, self.tag_column, self.scheme_in or "IOBES")
        self.scheme_in = self.scheme_in or detect_scheme(sentences)  # the first file read: train
        return [s._replace(tags=convert_tags(s.tags, self.scheme_in, self.scheme))
                for s in sentences]

    def read_all(self) -> dict[str, list[Sentence]]:
        return load_ner(self.dataset, scheme=self.scheme)

    def fit(self, train: list[Sentence]) -> None:
        keys = [[word_key(t) for t in s.tokens] for s in train]
        if self.vectors:
            self._vector_table = load_vectors(self.vectors)
            keys.append([word_key(w) for w in self._vector_table])  # they join the vocabulary
        words = Vocab.build(keys, min_freq=self.min_freq)
        chars = Vocab.build((c for t in s.tokens for c in t) for s in train)
        tags = Vocab.build((s.tags for s in train), pad="O", unk=None)  # O doubles as padding
        self.features = SentenceFeatures(words, chars, tags, self.max_word_len)

    def restore(self, artifacts: dict) -> None:
        super().restore(artifacts)
        self.features = SentenceFeatures.from_state_dict(artifacts["features"])

    def encode(self, sentences: list[Sentence], split: str) -> list[dict[str, torch.Tensor]]:
        unknown = sorted({t for s in sentences for t in s.tags} - set(self.features.tags.itos))
        if unknown:
            where = self.files[split] if self.files else f"{self.dataset} {split} split"
            raise ValueError(f"{where}: tag(s) {unknown} never occur in the training data")
        return [self.features.encode(s.tokens, s.tags) for s in sentences]

    def dims(self) -> dict:
        f = self.features
        return {"vocab_size": len(f.words), "char_vocab_size": len(f.chars),
                "tag_names": f.tags.itos, "scheme": self.scheme}

    def init_model(self, model) -> None:
        """Copy pretrained vectors into the word embedding, when a vectors file is given."""
        if not self._vector_table:
            return
        weight, words = model.words.weight, self.features.words
        dim = len(next(iter(self._vector_table.values())))
        if dim != weight.size(1):
            raise ValueError(f"{self.vectors} has {dim}-dimensional vectors but the model's "
                             f"word_dim is {weight.size(1)}; set model.word_dim={dim}")
        with torch.no_grad():
            for word, vec in self._vector_table.items():
                if word_key(word) in words:  # min_freq > 1 can leave a vector's word out
                    weight[words[word_key(word)]] = torch.from_numpy(vec)

    def split_dataset(self, split: str):
        if split == "train" and self.singleton_unk:
            train, words = self.splits["train"], self.features.words
            counts = torch.bincount(torch.cat([s["words"] for s in train]), minlength=len(words))
            return UnkSingletons(train, counts == 1, self.singleton_unk, words.unk_index)
        return self.splits[split]

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return SentenceFeatures.pad(items)

    def length(self, item: dict[str, torch.Tensor]) -> int:
        return len(item["words"])

    def artifacts(self) -> dict:
        return {"task": self.task, "features": self.features.state_dict(), "scheme": self.scheme,
                "scheme_in": self.scheme_in}
