"""A recurrent language model over characters or words (the seed's "sampling novel sequences").

    P(y_1..y_T) = Π_t P(y_t | y_1..y_{t-1}),   h_t = RNN(E y_{t-1}, h_{t-1}),
    P(y_t | y_<t) = softmax(W h_t + b)

With ``tie_weights`` the output matrix is the embedding matrix (Press & Wolf 2017; Inan et
al. 2017), through a projection of h_t to the embedding size when the two sizes differ.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..decoding import sample, swap_layers
from ..layers import Dropout, Linear
from .encoder import Encoder, build


class LanguageModel(nn.Module):
    """tokens (B, T) -> next-token logits (B, T, V) and the recurrent state after them.

    ``encoder`` makes the (unidirectional) recurrent layer from the embedding size
    (``seqkit.models.encoder``)."""

    def __init__(self, vocab_size: int, encoder: Encoder, embed_dim: int = 128,
                 dropout: float = 0.25, tie_weights: bool = False) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = build(encoder, embed_dim)
        if self.rnn.bidirectional:
            raise ValueError("a language model reads left to right: its encoder cannot be "
                             "bidirectional")
        size = self.rnn.output_size
        self.dropout = Dropout(dropout)
        self.proj = (Linear(size, embed_dim, bias=False)
                     if tie_weights and size != embed_dim else nn.Identity())
        self.out = Linear(embed_dim if tie_weights else size, vocab_size)
        if tie_weights:
            self.out.weight = self.embed.weight

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        out, state = self.rnn(self.dropout(self.embed(tokens)), state)
        return self.out(self.dropout(self.proj(out))), state

    def step(self, tokens: Tensor, state) -> tuple[Tensor, object]:
        """The decoding library's step: tokens (N,) -> log-probs (N, V); the state travels
        batch-first ((N, layers, H) per tensor) so searches can select its rows."""
        logits, state = self(tokens[:, None], swap_layers(state))
        return logits[:, 0].log_softmax(-1), swap_layers(state)

    @torch.no_grad()
    def generate(self, prime: Tensor, max_len: int, stop: int | None = None,
                 num_samples: int = 1, generator: torch.Generator | None = None,
                 never: list[int] | None = None, **options) -> Tensor:
        """``num_samples`` continuations (N, <= max_len) of the token ids ``prime`` (P >= 1,),
        drawn with ``seqkit.decoding.sample`` (temperature, top_k, top_p in ``options``);
        each row ends at ``stop`` if it emits it, later positions padded with it. Tokens in
        ``never`` (an ``<unk>``, say) are not drawn."""
        prime = prime.to(self.out.weight.device).expand(num_samples, -1)
        state = None
        if prime.size(1) > 1:  # run the prime but its last token, which starts the sampling
            _, state = self(prime[:, :-1])
            state = swap_layers(state)
        eos = self.vocab_size if stop is None else stop  # an id never drawn: no stop
        step = self.step
        if never:
            banned = torch.tensor(never, device=prime.device)

            def step(tokens, state):
                log_probs, state = self.step(tokens, state)
                return log_probs.index_fill(1, banned, float("-inf")), state
        decoded = sample(step, state, prime[:, -1], eos, max_len, generator=generator,
                         pad=stop if stop is not None else 0, **options)
        return decoded.tokens
