"""Many-to-one: embed, encode with a seqkit recurrent layer, pool, classify."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Dropout, Linear
from .embedding import drop_words
from .encoder import Encoder, build
from .pooling import Pooling


class SentenceClassifier(nn.Module):
    """tokens (B, T) and lengths (B,) -> logits (B, num_classes).

    ``encoder`` makes the recurrent layer from its input size (``seqkit.models.encoder``).
    ``word_dropout`` replaces a training token with <unk> (index ``unk_index``) with that
    probability.
    """

    def __init__(self, vocab_size: int, num_classes: int, encoder: Encoder,
                 embed_dim: int = 300, pooling: str = "max", dropout: float = 0.5,
                 embed_dropout: float = 0.3, word_dropout: float = 0.0, padding_idx: int = 0,
                 unk_index: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.embed_dropout = Dropout(embed_dropout)
        self.word_dropout, self.unk_index = word_dropout, unk_index
        self.encoder = build(encoder, embed_dim)
        size = self.encoder.output_size
        self.pool = Pooling(pooling, size)
        self.dropout = Dropout(dropout)
        self.num_classes = num_classes
        self.out = Linear(size, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        if self.training:
            tokens = drop_words(tokens, self.word_dropout, self.unk_index, self.embed.padding_idx)
        x = self.embed_dropout(self.embed(tokens))  # (B, T, E)
        states, final = self.encoder(x, lengths=lengths)  # (B, T, D), (L * D, B, H)
        h_n = final[0] if isinstance(final, tuple) else final
        D = 2 if self.encoder.bidirectional else 1
        last = torch.cat(list(h_n[-D:]), -1)  # top layer, both directions: (B, D * H)
        return self.out(self.dropout(self.pool(states, lengths, last)))
