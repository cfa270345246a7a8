"""One-to-many: a frame-level polyphonic language model over piano rolls.

    x_0 = 0 (silence), x_1..x_T the frames (88 notes each, 0/1)
    h_t = RNN(W_in x_{t-1}, h_{t-1})
    p(x_t | x_<t) = Π_j σ(W_out h_t + b)_j^{x_tj} (1 - σ(...)_j)^{1 - x_tj}

With ``attention``, h_t in the output is replaced by h̃_t = tanh(W_c [c_t; h_t]), where
c_t = Σ_{s<=t} softmax_s(score(h_t, h_s)) h_s attends over the RNN's outputs so far (an
attentive language model, Daniluk et al. 2017; Luong et al. 2015's combination): a tune that
repeats a phrase can copy it from where it was heard instead of keeping it in the state.

88 independent Bernoulli outputs per frame, the standard set-up of Boulanger-Lewandowski et
al. (2012) and Bai et al. (2018). Sampling feeds each sampled frame back as the next input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from typing import Callable

from ..layers import Dropout, Linear
from .attention import AdditiveAttention, attend
from .encoder import Encoder, build


class PianoRollLM(nn.Module):
    """rolls (B, T, 88) -> logits (B, T, 88) of each frame given the frames before it.

    ``note_bias``: a new model's output bias starts at each note's log-odds in the training
    frames (the music data's ``init_model`` passes them in). From PyTorch's default start, near
    even odds (61 nats a frame), Adam spent tens of epochs learning little more than that notes
    are rare: on Nottingham the best validation NLL was 3.50 at epoch 53 (batch 8), against
    3.19 at epoch 28 with this start. On JSB the slow start generalised better (validation
    8.03 against 8.19 with one layer of 768), so ``experiment=music_jsb`` turns it off.

    ``encoder`` makes the (unidirectional) recurrent layer from ``embed_dim``
    (``seqkit.models.encoder``). ``attention``, a scorer's partial (``DotAttention``,
    ``GeneralAttention``; None: none), adds self-attention over the past outputs.
    The state is then (RNN state, outputs so far): truncated BPTT and sampling attend over the
    whole piece heard so far, not only the current chunk.
    """

    def __init__(self, encoder: Encoder, num_notes: int = 88, embed_dim: int = 128,
                 dropout: float = 0.3, note_bias: bool = True,
                 attention: Callable[[int, int], nn.Module] | None = None) -> None:
        super().__init__()
        self.num_notes, self.note_bias = num_notes, note_bias
        self.embed = Linear(num_notes, embed_dim)
        self.rnn = build(encoder, embed_dim)
        if self.rnn.bidirectional:
            raise ValueError("a music model predicts each frame from the frames before it: "
                             "its encoder cannot be bidirectional")
        size = self.rnn.output_size
        self.dropout = Dropout(dropout)
        self.out = Linear(size, num_notes)
        self.attends = attention is not None
        if attention is not None:
            self.scorer = attention(size, size)
            if isinstance(self.scorer, AdditiveAttention):  # it would hold (B, T, T, H)
                raise ValueError("a music model's self-attention is dot or general: additive "
                                 "attention would hold a (B, T, T, H) tensor")
            self.combine = Linear(2 * size, size)

    def forward(self, inputs: Tensor, state=None) -> tuple[Tensor, object]:
        """inputs (B, T, 88): the frames x_{t-1} before each predicted one -> logits of x_t
        (B, T, 88) and the recurrent state after the last frame."""
        heard = None
        if self.attends and state is not None:
            state, heard = state
        out, state = self.rnn(self.dropout(self.embed(inputs)), state)
        if self.attends:
            out, heard = self.recall(out, heard)
            state = (state, heard)
        return self.out(self.dropout(out)), state

    def recall(self, out: Tensor, heard: Tensor | None) -> tuple[Tensor, Tensor]:
        """The RNN's outputs (B, T, H) and those before them (B, P, H) or None -> h̃ (B, T, H)
        and all outputs so far (B, P + T, H); step t sees the P earlier ones and t + 1 of T."""
        past = 0 if heard is None else heard.size(1)
        heard = out if heard is None else torch.cat([heard, out], 1)
        scores = self.scorer.scores(out, self.scorer.keys(heard))  # (B, T, P + T)
        seen = torch.ones(scores.shape[1:], dtype=torch.bool, device=out.device).tril(past)
        context, _ = attend(scores, seen[None], heard)
        return torch.tanh(self.combine(torch.cat([context, out], -1))), heard

    @torch.no_grad()
    def init_output_bias(self, frequencies: Tensor) -> None:
        """With ``note_bias``, start each note's output at the log-odds of how often it sounds
        (88,): the model then predicts the notes' frequencies before it has learnt anything
        else. Without, the output bias keeps PyTorch's default start (near even odds)."""
        if self.note_bias:
            self.out.bias.copy_(torch.logit(frequencies))

    @staticmethod
    def shift(rolls: Tensor) -> Tensor:
        """The inputs that predict ``rolls``: a silent frame, then every frame but the last."""
        return F.pad(rolls, (0, 0, 1, 0))[:, :-1]

    @torch.no_grad()
    def sample(self, num_frames: int, primer: Tensor | None = None, num_samples: int = 1,
               temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """(num_samples, P + num_frames, 88) rolls: the primer (P, 88) if any, then frames
        drawn one at a time from σ(logits / temperature), each fed back as the next input."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        device = self.out.weight.device
        start = torch.zeros(num_samples, 1, self.num_notes, device=device)
        frames, state = [], None
        if primer is not None and len(primer):
            primer = primer.to(device).float().expand(num_samples, -1, -1)
            frames = list(primer.unbind(1))
            _, state = self(torch.cat([start, primer[:, :-1]], 1))
            start = primer[:, -1:]
        x = start
        for _ in range(num_frames):
            logits, state = self(x, state)
            probs = torch.sigmoid(logits[:, -1] / temperature)
            frame = torch.bernoulli(probs, generator=generator)
            frames.append(frame)
            x = frame[:, None]
        return torch.stack(frames, 1)
