"""Many-to-many with T_x != T_y: an attentional encoder-decoder (Bahdanau et al. 2015,
Luong et al. 2015) on seqkit's recurrent layers.

    encoder   m_1..m_S = BiRNN(E_src x)                        (B, S, M)
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

The pieces are modules the model receives, as partials (Hydra ``_partial_: true``): the
``encoder`` and the decoder's ``rnn`` (``seqkit.models.encoder``), the ``decoder`` (``Decoder``,
or ``InputFedDecoder`` for input feeding) with its ``attention`` scorer and ``coverage``, and
the ``generator`` (``Generator``, or ``CopyGenerator`` for copy).

Training calls ``forward`` (teacher forcing): the decoder's features at every target
position, which the task turns into a loss through ``generator``. Decoding calls ``encode``
once and ``step`` per token, with a state whose tensors all have the batch on dim 0, so that
the decoding library (seqkit.decoding) can select and repeat rows for beams. Both run the
decoder's same ``advance`` when it needs its previous step (input feeding, coverage).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import LSTM, Dropout, Linear, keep_mask, length_mask
from .attention import AdditiveAttention, DotAttention, GeneralAttention, attend
from .encoder import Encoder, build
from .input_feed import InputFedLSTM

State = dict[str, Tensor]
Scorer = Callable[[int, int], nn.Module]
TOKENS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3}  # the data's special ids (seqkit.data)


class Decoded(NamedTuple):
    """What the decoder computed at each target position, each (B, T, .): the attentional
    vectors a_t (what the generator reads), the attention weights α_t (B, T, S), and for a
    copying generator the context c_t, the decoder states s_t and the inputs E y_{t-1}
    (None when the decoder was built without ``features``)."""
    vectors: Tensor
    attention: Tensor
    context: Tensor | None = None
    states: Tensor | None = None
    inputs: Tensor | None = None


class Bridge(nn.Module):
    """Encoder final states -> decoder initial states, per layer: tanh(W [h_fwd; h_bwd] + b).

    One projection per decoder state kind (h, and c for an LSTM) and layer, from the
    encoder's state of that kind, or from its h when it has none (a GRU encoder under an LSTM
    decoder). Layers are matched from the top: with fewer decoder layers the top encoder
    layers start them, with more the lowest encoder layer starts the extra ones. Takes
    (L_enc * D, B, H_enc) per encoder kind, in the layers' order (layer k, direction d at
    D * k + d), and returns (L_dec, B, H_dec) per decoder kind.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.directions = 2 if encoder.bidirectional else 1
        self.layers = [max(0, i + encoder.num_layers - decoder.num_layers)
                       for i in range(decoder.num_layers)]  # each decoder layer's source
        self.encoder_layers = encoder.num_layers
        enc, dec = encoder.state_sizes, decoder.state_sizes
        self.sources = [k if k < len(enc) else 0 for k in range(len(dec))]
        self.proj = nn.ModuleList(Linear(self.directions * enc[j], size)
                                  for size, j in zip(dec, self.sources) for _ in self.layers)

    def forward(self, finals: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        L, D, out = len(self.layers), self.directions, []
        for k, j in enumerate(self.sources):
            h = finals[j]
            both = h.view(self.encoder_layers, D, *h.shape[1:]).transpose(1, 2).flatten(2)
            out.append(torch.stack([torch.tanh(self.proj[k * L + i](both[e]))
                                    for i, e in enumerate(self.layers)]))  # (L_dec, B, H_dec)
        return tuple(out)


def _states(final) -> tuple[Tensor, ...]:
    """A layer's final state as a tuple: (h,) or (h, c)."""
    return tuple(final) if isinstance(final, (tuple, list)) else (final,)


class Coverage(nn.Module):
    """See et al. (2017): cov_t = Σ_{t' < t} α_t' enters the additive score as W_cov · cov_ti;
    the task adds λ · Σ_t Σ_i min(α_ti, cov_ti) to the loss."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = Linear(1, size, bias=False)

    def forward(self, coverage: Tensor) -> Tensor:
        """cov (B, S) -> the score's bias (B, 1, S, size)."""
        return self.proj(coverage[:, None, :, None])


class Decoder(nn.Module):
    """The attentional decoder (Luong et al. 2015), given the embedded previous tokens:

        s_t = RNN(E y_{t-1}, s_{t-1}),  α_t = softmax(score(s_t, m)),  c_t = Σ_i α_ti m_i
        a_t = tanh(W_c [c_t; s_t])

    ``rnn`` makes the recurrent layer from its input size, ``attention`` the scorer from
    (query size, memory size), ``coverage`` (or None) the coverage term from the additive
    attention's size. Without coverage, teacher forcing runs every step at once.
    ``out_size``: the width of a_t (None: the decoder's state size). ``features``: whether
    ``forward`` must also return the context, states and inputs (a copying generator reads
    them; ``Seq2Seq`` sets it from its generator).
    """

    def __init__(self, rnn: Encoder, attention: Scorer, embed_dim: int, memory_size: int,
                 out_size: int | None = None, dropout: float = 0.0,
                 coverage: Callable[[int], nn.Module] | None = None,
                 features: bool = False) -> None:
        super().__init__()
        if out_size is None:  # the state size, whatever the input: read off a meta build
            with torch.device("meta"):
                out_size = build(rnn, 1, "decoder").output_size
        self.out_size, self.features = out_size, features
        self.rnn = build(rnn, self.input_size(embed_dim), "decoder")
        if self.rnn.bidirectional:
            raise ValueError("the decoder generates left to right: it cannot be bidirectional")
        self.state_names = ("h", "c")[:len(self.rnn.state_sizes)]
        self.attention = attention(self.rnn.output_size, memory_size)
        self.combine = Linear(memory_size + self.rnn.output_size, out_size, bias=False)
        self.coverage = None
        if coverage is not None:
            if not isinstance(self.attention, AdditiveAttention):
                raise ValueError(f"coverage enters the additive attention's score (See et al. "
                                 f"2017), not {type(self.attention).__name__}'s")
            self.coverage = coverage(self.attention.v.in_features)
        self.dropout = Dropout(dropout)

    def input_size(self, embed_dim: int) -> int:
        return embed_dim

    def start(self, state: State, hidden: tuple[Tensor, ...]) -> State:
        """The decoder's entries of the state before the first step: its recurrent state
        ``hidden`` ((L, B, H) per kind) batch-first, and its own."""
        state.update((n, h.transpose(0, 1)) for n, h in zip(self.state_names, hidden))
        if self.coverage is not None:
            state["coverage"] = state["memory"].new_zeros(state["mask"].shape)
        return state

    def hidden(self, state: State):
        """The recurrent state as the layer takes it: (L, B, H) per kind."""
        hidden = tuple(state[n].transpose(0, 1).contiguous() for n in self.state_names)
        return hidden if len(hidden) > 1 else hidden[0]

    def attend(self, out: Tensor, state: State) -> Decoded:
        """Decoder states s (B, T, H) -> a, α and the context (each (B, T, .)). With coverage
        T is 1: one step at a time."""
        bias = self.coverage(state["coverage"]) if self.coverage is not None else None
        scores = self.attention.scores(out, state["keys"], *([bias] if bias is not None else []))
        context, weights = attend(scores, state["mask"], state["memory"])
        vec = self.dropout(torch.tanh(self.combine(torch.cat([context, out], -1))))
        return Decoded(vec, weights, context, out)

    def rnn_input(self, emb: Tensor, state: State) -> Tensor:
        return emb

    def advance(self, emb: Tensor, state: State) -> tuple[Decoded, State]:
        """One step from the embedded previous tokens emb (B, 1, E): its ``Decoded`` and the
        state after it."""
        out, hidden = self.rnn(self.rnn_input(emb, state), self.hidden(state))
        step = self.attend(out, state)._replace(inputs=emb)
        new = {**state, **{n: h.transpose(0, 1) for n, h in zip(self.state_names,
                                                                 _states(hidden))}}
        if self.coverage is not None:
            new["coverage"] = state["coverage"] + step.attention[:, 0]
        if "feed" in state:
            new["feed"] = step.vectors[:, 0]
        return step, new

    def loop(self, emb: Tensor, state: State) -> Decoded:
        """Teacher forcing one step after the other."""
        steps = []
        for t in range(emb.size(1)):
            step, state = self.advance(emb[:, t:t + 1], state)
            steps.append(step)
        return Decoded(*(torch.cat(p, 1) for p in zip(*steps)))

    def forward(self, emb: Tensor, state: State) -> Decoded:
        """Teacher forcing over the embedded gold previous tokens emb (B, T, E)."""
        if self.coverage is not None:
            return self.loop(emb, state)
        out, _ = self.rnn(emb, self.hidden(state))
        return self.attend(out, state)._replace(inputs=emb)


class InputFedDecoder(Decoder):
    """Input feeding (Luong et al. 2015): s_t = RNN([E y_{t-1}; a_{t-1}], s_{t-1}), a_0 = 0.

    Every step waits for the last one's a, so teacher forcing loops over the target; on CPU a
    one-layer LSTM of torch's kernels with dot or general attention runs the loop as one
    autograd function (``InputFedLSTM``), unless the generator reads ``features``.
    """

    def input_size(self, embed_dim: int) -> int:
        return embed_dim + self.out_size

    def start(self, state: State, hidden: tuple[Tensor, ...]) -> State:
        state["feed"] = state["memory"].new_zeros(state["memory"].size(0), self.out_size)
        return super().start(state, hidden)

    def rnn_input(self, emb: Tensor, state: State) -> Tensor:
        return torch.cat([emb, state["feed"][:, None]], -1)

    def fusable(self, emb: Tensor) -> bool:
        """Whether ``InputFedLSTM`` computes teacher forcing for input emb."""
        rnn = self.rnn
        return (not emb.is_cuda and not self.features and self.coverage is None
                and type(rnn) is LSTM and rnn.num_layers == 1 and rnn.backend != "custom"
                and not rnn.options and not rnn.proj_size
                and isinstance(self.attention, (DotAttention, GeneralAttention)))

    def forward(self, emb: Tensor, state: State) -> Decoded:
        if not self.fusable(emb):
            return self.loop(emb, state)
        p = self.dropout.p if self.training else 0.0
        drop = keep_mask(emb.new_empty(*emb.shape[:2], self.out_size), p) if p > 0 else None
        w_ih, w_hh, *bias = self.rnn.flat_weights()
        b_ih, b_hh = bias if bias else (None, None)
        # under CPU autocast (trainer.precision=bf16-mixed) the matrix products take its dtype
        low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        vec, weights = InputFedLSTM.apply(emb, state["h"][:, 0], state["c"][:, 0],
                                          state["memory"], state["keys"], state["mask"], w_ih,
                                          w_hh, b_ih, b_hh, self.combine.weight, drop, low)
        return Decoded(vec, weights)


class Generator(nn.Module):
    """The output layer: p(y_t) = softmax(W_o a_t + b) over the target vocabulary.

    ``features``: the width of [c_t; s_t; E y_{t-1}], which only a copying generator reads.
    """

    reads_features = False

    def __init__(self, input_size: int, vocab_size: int, features: int = 0) -> None:
        super().__init__()
        self.out = Linear(input_size, vocab_size)

    def logits(self, vectors: Tensor) -> Tensor:
        """The output layer on vectors (..., A). Under CPU autocast the rows are padded to a
        multiple of 64: oneDNN compiles a bfloat16 kernel for every new row count (15-18 ms
        each for n x 256 @ 256 x 8000), and the row count (a training batch's target tokens,
        a beam's live hypotheses) changes every step."""
        rows = vectors.reshape(-1, vectors.size(-1))
        extra = -rows.size(0) % 64 if torch.is_autocast_enabled("cpu") else 0
        if not extra:
            return self.out(vectors)
        logits = self.out(F.pad(rows, (0, 0, 0, extra)))[:rows.size(0)]
        return logits.view(*vectors.shape[:-1], -1)

    def forward(self, decoded: Decoded, src_ext: Tensor | None = None,
                n_ext: int = 0) -> Tensor:
        """log P(y_t) (B, T, V)."""
        return F.log_softmax(self.logits(decoded.vectors), -1)


class CopyGenerator(Generator):
    """See et al. (2017)'s pointer-generator:

        p_gen = σ(w · [c_t; s_t; E y_{t-1}] + b)
        P(w) = p_gen · p_vocab(w) + (1 - p_gen) · Σ_{i: x_i = w} α_ti

    over the vocabulary extended by the source's unknown words."""

    reads_features = True

    def __init__(self, input_size: int, vocab_size: int, features: int = 0) -> None:
        super().__init__(input_size, vocab_size)
        self.gen = Linear(features, 1)

    def forward(self, decoded: Decoded, src_ext: Tensor | None = None,
                n_ext: int = 0) -> Tensor:
        """log P(w) (B, T, V + n_ext); src_ext (B, S): the source in the extended vocabulary."""
        vec, weights, context, out, emb = decoded
        p_gen = torch.sigmoid(self.gen(torch.cat([context, out, emb], -1)))  # (B, T, 1)
        probs = F.pad(p_gen * self.logits(vec).softmax(-1), (0, n_ext))
        index = src_ext[:, None, :].expand_as(weights)
        probs = probs.scatter_add(-1, index, (1.0 - p_gen) * weights)
        return probs.clamp_min(1e-20).log()  # words neither generable nor in the source: ~0


class Seq2Seq(nn.Module):
    """src (B, S), src_lengths (B,), tgt_in (B, T) -> the decoder's ``Decoded`` features.

    ``encoder`` makes the source encoder from ``embed_dim`` (``seqkit.models.encoder``),
    ``decoder`` the ``Decoder`` from (embed_dim, memory_size, out_size, dropout, features),
    ``generator`` the output layer from (out_size, tgt_vocab_size, features).
    ``tie_embeddings`` makes W_o the target embedding (a_t then has ``embed_dim`` units);
    ``share_embeddings`` uses one embedding for both sides (a joint vocabulary). ``bridge``
    starts the decoder from the encoder's final states (else zeros). ``tokens``: the ids of
    pad, unk, bos and eos.
    """

    # the decoding state's entries that every beam of a sentence shares (see ``encode``)
    static_state = ("memory", "keys", "mask", "src_ext", "ext")

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, encoder: Encoder,
                 decoder: Callable[..., Decoder], generator: Callable[..., Generator] = Generator,
                 embed_dim: int = 256, dropout: float = 0.3, bridge: bool = True,
                 tie_embeddings: bool = False, share_embeddings: bool = False,
                 tokens: dict[str, int] | None = None) -> None:
        super().__init__()
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary for both sides, got sizes "
                             f"{src_vocab_size} and {tgt_vocab_size} (train a joint model)")
        tokens = {**TOKENS, **(tokens or {})}
        self.pad_index, self.unk_index = tokens["pad"], tokens["unk"]
        self.bos_index, self.eos_index = tokens["bos"], tokens["eos"]
        self.vocab_size = tgt_vocab_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=self.pad_index)
        self.tgt_embed = (self.src_embed if share_embeddings else
                          nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=self.pad_index))
        self.encoder = build(encoder, embed_dim)
        memory = self.encoder.output_size
        self.decoder = decoder(embed_dim=embed_dim, memory_size=memory,
                               out_size=embed_dim if tie_embeddings else None, dropout=dropout)
        features = memory + self.decoder.rnn.output_size + embed_dim  # [c_t; s_t; E y]
        self.generator = generator(self.decoder.out_size, tgt_vocab_size, features)
        self.copy = self.decoder.features = self.generator.reads_features
        if self.copy and not share_embeddings:
            raise ValueError("copy writes source words into the output: it needs one vocabulary "
                             "for both sides (share_embeddings=true)")
        if tie_embeddings:
            self.generator.out.weight = self.tgt_embed.weight
        self.bridge = Bridge(self.encoder, self.decoder.rnn) if bridge else None
        self.dropout = Dropout(dropout)

    @property
    def coverage(self) -> bool:
        return self.decoder.coverage is not None

    # -- encoder -----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor, src_ext: Tensor | None = None,
               n_ext: int = 0) -> State:
        """The decoding state before the first step, every tensor with the batch on dim 0:
        ``memory`` (B, S, M), ``keys`` (B, S, K) the attention's precomputed half, ``mask``
        (B, S) true on real tokens, ``h`` (and ``c``) (B, L, H); with input feeding ``feed``
        (B, A) = a_0 = 0; with coverage ``coverage`` (B, S) = 0; with copy ``src_ext`` (B, S)
        the source in the extended vocabulary (``src`` when not given) and ``ext`` (B, n_ext),
        whose width is how many unknown source words extend the vocabulary."""
        memory, finals = self.encoder(self.dropout(self.src_embed(src)), lengths=src_lengths)
        rnn = self.decoder.rnn
        if self.bridge is not None:
            hidden = self.bridge(_states(finals))
        else:
            hidden = tuple(memory.new_zeros(rnn.num_layers, src.size(0), n)
                           for n in rnn.state_sizes)
        state = self.decoder.start({"memory": memory, "keys": self.decoder.attention.keys(memory),
                                    "mask": length_mask(src_lengths, src.size(1), src.device)},
                                   hidden)
        if self.copy:
            state["src_ext"] = src if src_ext is None else src_ext
            state["ext"] = memory.new_zeros(src.size(0), n_ext)
        return state

    # -- decoder -----------------------------------------------------------------------------
    def known(self, tokens: Tensor) -> Tensor:
        """Extended ids (copied unknown words) as <unk>: what the embedding can look up."""
        return tokens.masked_fill(tokens >= self.vocab_size, self.unk_index) if self.copy \
            else tokens

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """tokens y_{t-1} (N,) -> log p(y_t) (N, V) and the state after the step."""
        emb = self.dropout(self.tgt_embed(self.known(tokens)))[:, None]
        decoded, new = self.decoder.advance(emb, state)
        return self.log_probs(decoded, state)[:, 0], new

    def log_probs(self, decoded: Decoded, state: State) -> Tensor:
        """The generator's log P(y_t) (B, T, V), over V + n_ext with copy."""
        if self.copy:
            return self.generator(decoded, state["src_ext"], state["ext"].size(1))
        return self.generator(decoded)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                src_ext: Tensor | None = None, n_ext: int = 0) -> Decoded:
        """Teacher forcing: the decoder's features with the gold previous tokens at every
        target position (B, T, .). ``generator`` (``log_probs``) turns them into P(y_t)."""
        state = self.encode(src, src_lengths, src_ext, n_ext)
        emb = self.dropout(self.tgt_embed(self.known(tgt_in)))  # (B, T, E)
        return self.decoder(emb, state)
