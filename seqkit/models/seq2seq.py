"""Many-to-many with T_x != T_y: an attentional encoder-decoder (Bahdanau et al. 2015,
Luong et al. 2015) on seqkit's recurrent layers.

    encoder   m_1..m_S = BiRNN(E_src x)                        (B, S, M), M = 2 * (H / 2)
    bridge    s_0 = tanh(W_b [h_fwd; h_bwd] + b_b), per layer   (and c_0 for an LSTM)
    decoder   s_t = RNN([E_tgt y_{t-1}; a_{t-1}], s_{t-1})      input feeding: a_{t-1}
    attention α_t = softmax(score(s_t, m)), c_t = Σ_i α_ti m_i  (padding masked)
    output    a_t = tanh(W_c [c_t; s_t]),  p(y_t) = softmax(W_o a_t)

Two mechanisms of See et al. (2017) for summarization, off by default:

    copy      p_gen = σ(w · [c_t; s_t; E y_{t-1}] + b)
              P(w) = p_gen · p_vocab(w) + (1 - p_gen) · Σ_{i: x_i = w} α_ti
              over the vocabulary extended by the source's unknown words
    coverage  cov_t = Σ_{t' < t} α_t', fed to the additive score as W_cov · cov_ti;
              the task adds λ · Σ_t Σ_i min(α_ti, cov_ti) to the loss

Training calls ``forward`` (teacher forcing); decoding calls ``encode`` once and ``step``
per token, with a state whose tensors all have the batch on dim 0, so that the decoding
library (seqkit.decoding) can select and repeat rows for beams. Both run the same ``_advance``
when the decoder needs its previous step (input feeding, coverage).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Dropout, keep_mask, length_mask, recurrent_layer
from .attention import DotAttention, GeneralAttention, attend
from .attention import attention as make_attention
from .input_feed import InputFedLSTM

State = dict[str, Tensor]


class Bridge(nn.Module):
    """Encoder final states -> decoder initial states, per layer: tanh(W [h_fwd; h_bwd] + b).

    Takes and returns one tensor per state kind (h, and c for an LSTM): (L * 2, B, H_enc) in
    the layers' order (layer k, direction d at 2k + d) -> (L, B, H_dec).
    """

    def __init__(self, num_states: int, num_layers: int, enc_size: int, dec_size: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.proj = nn.ModuleList(nn.Linear(2 * enc_size, dec_size)
                                  for _ in range(num_states * num_layers))

    def forward(self, finals: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        L, out = self.num_layers, []
        for k, h in enumerate(finals):
            both = h.view(L, 2, *h.shape[1:]).transpose(1, 2).flatten(2)  # (L, B, 2 * H_enc)
            out.append(torch.stack([torch.tanh(self.proj[k * L + i](both[i]))
                                    for i in range(L)]))
        return tuple(out)


def _states(final) -> tuple[Tensor, ...]:
    """A layer's final state as a tuple: (h,) or (h, c)."""
    return tuple(final) if isinstance(final, (tuple, list)) else (final,)


class Seq2Seq(nn.Module):
    """src (B, S), src_lengths (B,), tgt_in (B, T) -> log-probabilities (B, T, tgt_vocab_size).

    ``cell`` and ``backend`` pick the seqkit layers (the encoder has ``hidden_size / 2`` units
    per direction); ``attention`` is "dot", "general" or "additive"; ``input_feed`` feeds
    a_{t-1} to the decoder (Luong), at the price of a loop over the target in training.
    ``tie_embeddings`` makes W_o the target embedding (a_t then has ``embed_dim`` units);
    ``share_embeddings`` uses one embedding for both sides (a joint vocabulary). ``copy``
    and ``coverage`` are See et al.'s; coverage needs the additive attention.
    """

    # the decoding state's entries that every beam of a sentence shares (see ``encode``)
    static_state = ("memory", "keys", "mask", "src_ext", "ext")

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_dim: int = 256,
                 hidden_size: int = 256, num_layers: int = 1, cell: str = "lstm",
                 backend: str = "auto", attention: str = "general", input_feed: bool = True,
                 dropout: float = 0.3, bridge: bool = True, tie_embeddings: bool = False,
                 share_embeddings: bool = False, pad_index: int = 0, bos_index: int = 2,
                 eos_index: int = 3, unk_index: int = 1, copy: bool = False,
                 coverage: bool = False, cell_options: dict | None = None) -> None:
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"hidden_size must be even (the encoder has hidden_size / 2 units "
                             f"per direction), got {hidden_size}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary for both sides, got sizes "
                             f"{src_vocab_size} and {tgt_vocab_size} (train a joint model)")
        if copy and not share_embeddings:
            raise ValueError("copy writes source words into the output: it needs one vocabulary "
                             "for both sides (share_embeddings=true)")
        if coverage and attention != "additive":
            raise ValueError(f"coverage enters the additive attention's score (See et al. "
                             f"2017); set attention=additive, not {attention!r}")
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.unk_index, self.vocab_size = unk_index, tgt_vocab_size
        self.copy, self.coverage = copy, coverage
        self.input_feed, self.num_layers = input_feed, num_layers
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=pad_index)
        self.tgt_embed = (self.src_embed if share_embeddings else
                          nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=pad_index))
        self.out_size = embed_dim if tie_embeddings else hidden_size  # |a_t|
        rnn = {"num_layers": num_layers, "batch_first": True, "backend": backend,
               "dropout": dropout if num_layers > 1 else 0.0, **(cell_options or {})}
        self.encoder = recurrent_layer(cell, embed_dim, hidden_size // 2, bidirectional=True, **rnn)
        self.decoder = recurrent_layer(cell, embed_dim + self.out_size * input_feed, hidden_size,
                                       **rnn)
        self.state_names = ("h", "c")[:len(self.decoder.cells[0].state_sizes())]
        self.bridge = (Bridge(len(self.state_names), num_layers, hidden_size // 2, hidden_size)
                       if bridge else None)
        self.attention = make_attention(attention, hidden_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, self.out_size, bias=False)
        self.out = nn.Linear(self.out_size, tgt_vocab_size)
        if tie_embeddings:
            self.out.weight = self.tgt_embed.weight
        self.cover = nn.Linear(1, hidden_size, bias=False) if coverage else None
        self.gen = nn.Linear(2 * hidden_size + embed_dim, 1) if copy else None
        self.dropout = Dropout(dropout)

    # -- encoder -----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor, src_ext: Tensor | None = None,
               n_ext: int = 0) -> State:
        """The decoding state before the first step, every tensor with the batch on dim 0:
        ``memory`` (B, S, M), ``keys`` (B, S, K) the attention's precomputed half, ``mask``
        (B, S) true on real tokens, ``h`` (and ``c``) (B, L, H), ``feed`` (B, A) = a_0 = 0;
        with coverage ``coverage`` (B, S) = 0; with copy ``src_ext`` (B, S) the source in the
        extended vocabulary (``src`` when not given) and ``ext`` (B, n_ext), whose width is
        how many unknown source words extend the vocabulary."""
        memory, finals = self.encoder(self.dropout(self.src_embed(src)), lengths=src_lengths)
        finals = _states(finals)
        if self.bridge is not None:
            hidden = self.bridge(finals)
        else:
            hidden = tuple(h.new_zeros(self.num_layers, h.size(1), self.decoder.hidden_size)
                           for h in finals)
        B, S = src.shape
        state = {"memory": memory, "keys": self.attention.keys(memory),
                 "mask": length_mask(src_lengths, S, src.device),
                 "feed": memory.new_zeros(B, self.out_size)}
        state.update({name: h.transpose(0, 1) for name, h in zip(self.state_names, hidden)})
        if self.coverage:
            state["coverage"] = memory.new_zeros(B, S)
        if self.copy:
            state["src_ext"] = src if src_ext is None else src_ext
            state["ext"] = memory.new_zeros(B, n_ext)
        return state

    # -- decoder -----------------------------------------------------------------------------
    def _attend(self, out: Tensor, state: State) -> tuple[Tensor, Tensor, Tensor]:
        """Decoder outputs s (B, T, H) -> a (B, T, A), attention weights α (B, T, S) and the
        context (B, T, M). With coverage T is 1: one step at a time."""
        scores = (self.attention.scores(out, state["keys"],
                                        self.cover(state["coverage"][:, None, :, None]))
                  if self.coverage else self.attention.scores(out, state["keys"]))
        context, weights = attend(scores, state["mask"], state["memory"])
        vec = self.dropout(torch.tanh(self.combine(torch.cat([context, out], -1))))
        return vec, weights, context

    def _output(self, vec: Tensor, weights: Tensor, context: Tensor, out: Tensor, emb: Tensor,
                state: State) -> Tensor:
        """log P(y_t) (B, T, V), or over V + n_ext with copy."""
        logits = self._logits(vec)
        if not self.copy:
            return F.log_softmax(logits, -1)
        p_gen = torch.sigmoid(self.gen(torch.cat([context, out, emb], -1)))  # (B, T, 1)
        probs = F.pad(p_gen * logits.softmax(-1), (0, state["ext"].size(1)))
        index = state["src_ext"][:, None, :].expand_as(weights)
        probs = probs.scatter_add(-1, index, (1.0 - p_gen) * weights)
        return probs.clamp_min(1e-20).log()  # words neither generable nor in the source: ~0

    def _logits(self, vec: Tensor) -> Tensor:
        """The output layer on vec (..., A). Under CPU autocast the rows are padded to a
        multiple of 64: oneDNN compiles a bfloat16 kernel for every new row count (15-18 ms
        each for n x 256 @ 256 x 8000), and the row count (a training batch's target tokens,
        a beam's live hypotheses) changes every step."""
        rows = vec.reshape(-1, vec.size(-1))
        extra = -rows.size(0) % 64 if torch.is_autocast_enabled("cpu") else 0
        if not extra:
            return self.out(vec)
        logits = self.out(F.pad(rows, (0, 0, 0, extra)))[:rows.size(0)]
        return logits.view(*vec.shape[:-1], -1)

    def _hidden(self, state: State) -> tuple[Tensor, ...]:
        """The decoder's state as its layers take it: (L, B, H) per kind."""
        return tuple(state[n].transpose(0, 1).contiguous() for n in self.state_names)

    def known(self, tokens: Tensor) -> Tensor:
        """Extended ids (copied unknown words) as <unk>: what the embedding can look up."""
        return tokens.masked_fill(tokens >= self.vocab_size, self.unk_index) if self.copy \
            else tokens

    def _advance(self, emb: Tensor, state: State) -> tuple[tuple[Tensor, ...], State]:
        """One decoder step from the embedded previous tokens emb (B, 1, E): what ``_output``
        turns into log P (a_t, α_t, context, s_t: each (B, 1, .)) and the state after it."""
        hidden = self._hidden(state)
        x = torch.cat([emb, state["feed"][:, None]], -1) if self.input_feed else emb
        out, hidden = self.decoder(x, hidden if len(hidden) > 1 else hidden[0])
        vec, weights, context = self._attend(out, state)
        new = {**state, "feed": vec[:, 0]}
        new.update({n: h.transpose(0, 1) for n, h in zip(self.state_names, _states(hidden))})
        if self.coverage:
            new["coverage"] = state["coverage"] + weights[:, 0]
        return (vec, weights, context, out), new

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens y_{t-1} (N,) -> log p(y_t) (N, V) and the state after the step."""
        emb = self.dropout(self.tgt_embed(self.known(tokens)))[:, None]
        (vec, weights, context, out), new = self._advance(emb, state)
        return self._output(vec, weights, context, out, emb, state)[:, 0], new

    def _fusable(self, emb: Tensor) -> bool:
        """Whether ``InputFedLSTM`` computes the input-fed loop: one LSTM layer of torch's
        kernels on CPU, dot or general attention, neither copy nor coverage."""
        decoder = self.decoder
        return (not emb.is_cuda and self.input_feed and not (self.copy or self.coverage)
                and "c" in self.state_names and decoder.num_layers == 1
                and decoder.backend != "custom" and not decoder.options and not decoder.proj_size
                and isinstance(self.attention, (DotAttention, GeneralAttention)))

    def _input_fed(self, emb: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """a (B, T, A) and α (B, T, S) of the input-fed loop over emb (B, T, E), fused."""
        p = self.dropout.p if self.training else 0.0
        drop = keep_mask(emb.new_empty(*emb.shape[:2], self.out_size), p) if p > 0 else None
        w_ih, w_hh, *bias = self.decoder.flat_weights()
        b_ih, b_hh = bias if bias else (None, None)
        # under CPU autocast (trainer.precision=bf16-mixed) the matrix products take its dtype
        low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        return InputFedLSTM.apply(emb, state["h"][:, 0], state["c"][:, 0], state["memory"],
                                  state["keys"], state["mask"], w_ih, w_hh, b_ih, b_hh,
                                  self.combine.weight, drop, low)

    def teacher_forced(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                       src_ext: Tensor | None = None, n_ext: int = 0,
                       keep: Tensor | None = None,
                       logits: bool = False) -> tuple[Tensor, Tensor]:
        """log p(y_t | y_<t, x) (B, T, V) and attention weights α (B, T, S) with the gold
        previous tokens. The steps run one by one only when one waits for the last (input
        feeding, coverage); the output layer runs once over all of them. ``keep`` (B, T) bool
        (not with copy): the output layer runs only there (not on padding), and the
        log-probabilities come as (n, V) for the n kept positions in row-major order.
        ``logits`` (with ``keep``): the output layer's scores before the softmax instead,
        for a loss that normalises them itself (``smoothed_cross_entropy``)."""
        state = self.encode(src, src_lengths, src_ext, n_ext)
        emb = self.dropout(self.tgt_embed(self.known(tgt_in)))  # (B, T, E)
        if not (self.input_feed or self.coverage):
            hidden = self._hidden(state)
            out, _ = self.decoder(emb, hidden if len(hidden) > 1 else hidden[0])
            vec, weights, context = self._attend(out, state)
        elif self._fusable(emb):
            vec, weights = self._input_fed(emb, state)
            context = out = None  # only a copying model reads them, and it is not fusable
        else:
            steps = []
            for t in range(tgt_in.size(1)):
                pieces, state = self._advance(emb[:, t:t + 1], state)
                steps.append(pieces)
            vec, weights, context, out = (torch.cat(p, 1) for p in zip(*steps))
        if keep is not None:
            if self.copy:
                raise ValueError("keep= selects output positions; a copying model mixes in "
                                 "its source per sentence and needs them all")
            vec = vec[keep]
            if logits:
                return self._logits(vec), weights
        return self._output(vec, weights, context, out, emb, state), weights

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                src_ext: Tensor | None = None, n_ext: int = 0) -> Tensor:
        """log p(y_t | y_<t, x) for every target position: (B, T, V), V + n_ext with copy."""
        return self.teacher_forced(src, src_lengths, tgt_in, src_ext, n_ext)[0]
