"""Many-to-many with equal lengths: a BiLSTM-CRF sequence tagger (Lample et al. 2016,
Ma & Hovy 2016) with word, casing and character features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.ner import CASES
from ..layers import LSTM, Dropout, Linear
from ..layers.crf import CRF, allowed_transitions
from .embedding import drop_words
from .encoder import Encoder, build


class CharCNN(nn.Module):
    """Ma & Hovy 2016: a convolution over each word's characters, max-pooled: (B, T, L) ->
    (B, T, features)."""

    def __init__(self, vocab_size: int, dim: int, features: int, kernel: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, features, kernel, padding=kernel // 2)

    def forward(self, chars: Tensor) -> Tensor:
        B, T, L = chars.shape
        chars = chars.view(B * T, L)
        words = chars[:, 0] != 0  # only real words: padding positions get zeros
        c = chars[words]  # (W, L)
        y = self.conv(self.embed(c).transpose(1, 2))  # (W, features, L)
        y = y.masked_fill((c == 0)[:, None, :], float("-inf")).max(-1).values
        out = y.new_zeros(B * T, y.size(1))
        out[words] = y
        return out.view(B, T, -1)


class CharLSTM(nn.Module):
    """Lample et al. 2016: a BiLSTM over each word's characters, final states concatenated:
    (B, T, L) -> (B, T, 2 * hidden)."""

    def __init__(self, vocab_size: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.lstm = LSTM(dim, hidden, bidirectional=True, batch_first=True)

    def forward(self, chars: Tensor) -> Tensor:
        B, T, L = chars.shape
        lengths = (chars != 0).sum(-1).view(-1)  # (B*T,)
        words = lengths > 0
        _, (h_n, _) = self.lstm(self.embed(chars.view(B * T, L)[words]), lengths=lengths[words])
        out = h_n.new_zeros(B * T, 2 * h_n.size(-1))
        out[words] = torch.cat([h_n[0], h_n[1]], -1)
        return out.view(B, T, -1)


class Tagger(nn.Module):
    """words, cases (B, T), chars (B, T, L), lengths (B,) -> tag scores (B, T, num_tags).

    ``encoder`` makes the recurrent layer over the word features (``seqkit.models.encoder``).
    ``crf=True`` puts a linear-chain CRF on top whose transitions the tag scheme constrains;
    otherwise each token is classified on its own (softmax). ``word_dropout`` replaces a
    training word with <unk> with that probability, so the unknown-word embedding is learnt.
    """

    def __init__(self, vocab_size: int, char_vocab_size: int, tag_names: list[str],
                 encoder: Encoder, scheme: str = "IOBES", word_dim: int = 100,
                 case_dim: int = 10, char_encoder: str | None = "cnn", char_dim: int = 30,
                 char_features: int = 50, dropout: float = 0.5, word_dropout: float = 0.05,
                 crf: bool = True, unk_index: int = 1) -> None:
        super().__init__()
        if char_encoder not in ("cnn", "lstm", None):
            raise ValueError(f"char_encoder must be 'cnn', 'lstm' or null, got {char_encoder!r}")
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.cases = nn.Embedding(len(CASES), case_dim, padding_idx=0) if case_dim else None
        self.chars = None
        if char_encoder == "cnn":
            self.chars = CharCNN(char_vocab_size, char_dim, char_features)
        elif char_encoder == "lstm":
            self.chars = CharLSTM(char_vocab_size, char_dim, char_features // 2)
        char_size = {"cnn": char_features, "lstm": 2 * (char_features // 2), None: 0}
        size = word_dim + case_dim + char_size[char_encoder]
        self.dropout, self.word_dropout, self.unk_index = Dropout(dropout), word_dropout, unk_index
        self.encoder = build(encoder, size)
        self.tag_names, self.scheme = list(tag_names), scheme
        self.out = Linear(self.encoder.output_size, len(tag_names))
        self.crf = CRF(len(tag_names), *allowed_transitions(tag_names, scheme)) if crf else None

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        if self.training:
            words = drop_words(words, self.word_dropout, self.unk_index)
        parts = [self.words(words)]
        if self.cases is not None:
            parts.append(self.cases(cases))
        if self.chars is not None:
            parts.append(self.chars(chars))
        x = self.dropout(torch.cat(parts, -1))  # (B, T, size)
        states, _ = self.encoder(x, lengths=lengths)  # (B, T, output_size)
        return self.out(self.dropout(states))

    def loss(self, scores: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Mean negative log-likelihood per sentence (CRF) or per token (softmax)."""
        if self.crf is not None:
            return self.crf.nll(scores, tags, mask)
        return F.cross_entropy(scores[mask], tags[mask])

    def decode(self, scores: Tensor, mask: Tensor) -> list[list[int]]:
        """The best tag sequence of each sentence (Viterbi under the CRF)."""
        if self.crf is not None:
            return self.crf.decode(scores, mask)
        best = scores.argmax(-1)
        return [row[:n].tolist() for row, n in zip(best, mask.sum(-1).tolist())]
