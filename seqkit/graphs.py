"""The graphs a trained model exports (``seqkit.export`` writes them): its recurrent layers
on torch's fused kernels with lengths as tensor operations (``Packed``), and one ``Graph`` per
piece a runtime calls (a classifier, a tagger with its Viterbi, a seq2seq encoder and decoder
step, a language or music model's step). Each predictor of ``seqkit.inference`` names its own.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .layers import length_mask
from .layers.crf import best_paths
from .layers.cudnn import fused_run
from .layers.recurrent import Recurrent

class Packed(nn.Module):
    """A seqkit recurrent layer as graph operations only, for tracing: torch's fused kernel
    on the same weights, and with ``lengths`` the batch sorted, packed, run, unpacked and
    put back in order, all as tensor operations (no Python ints), so lengths stay inputs."""

    def __init__(self, layer: Recurrent) -> None:
        super().__init__()
        options = layer.cells[0].options
        if options:
            raise ValueError(f"cannot export a layer with {', '.join(options)}: torch's fused "
                             f"kernels, which TorchScript and ONNX run, do not have them")
        self.layer = layer

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.layer, name)

    def forward(self, input: Tensor, hx=None, lengths: Tensor | None = None):
        layer = self.layer
        batch_dim = 0 if layer.batch_first else 1
        if hx is None:
            LD = layer.num_layers * (2 if layer.bidirectional else 1)
            hx = tuple(input.new_zeros(LD, input.size(batch_dim), n)
                       for n in layer.state_sizes)
        hx = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        if lengths is None:
            out, state = fused_run(layer, input, None, hx)
        else:
            ordered, order = lengths.sort(descending=True)
            data, batch_sizes = torch._pack_padded_sequence(input.index_select(batch_dim, order),
                                                            ordered, layer.batch_first)
            out, state = fused_run(layer, data, batch_sizes,
                                   tuple(h.index_select(1, order) for h in hx))
            out, _ = torch._pad_packed_sequence(out, batch_sizes, layer.batch_first, 0.0,
                                                input.size(1 - batch_dim))
            back = order.argsort()
            out, state = out.index_select(batch_dim, back), tuple(s.index_select(1, back)
                                                                  for s in state)
        return out, (state if len(state) == 2 else state[0])


def exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (sharing nothing) whose recurrent layers are ``Packed``."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Recurrent):
                setattr(module, child_name, Packed(child))
    return model


# -- the graphs of each task -------------------------------------------------------------------
class Graph(nn.Module):
    """One exported graph: a module, example inputs to trace it with, and the names and
    shapes of its inputs and outputs (a str dimension is dynamic, an int fixed)."""

    def __init__(self, name: str, model: nn.Module, inputs: dict[str, list],
                 outputs: dict[str, list], example: tuple[Tensor, ...]) -> None:
        super().__init__()
        self.name, self.model, self.inputs, self.outputs = name, model, inputs, outputs
        self.example = example
        self.meta: dict = {}  # what export.json says beside the graph's files


class LMStep(Graph):
    """A language or music model's step: ``(inputs, h[, c]) -> (outputs, h[, c])``."""

    def __init__(self, model: nn.Module) -> None:
        rnn, notes = model.rnn, getattr(model, "num_notes", None)  # a music model's
        shapes = {name: [rnn.num_layers, "batch", n]  # h has proj_size features, c hidden
                  for name, n in zip(("h", "c"), rnn.state_sizes)}
        if notes:
            size, example = [notes], torch.bernoulli(torch.full((3, 1, notes), 0.1))
        else:
            size, example = [], torch.randint(0, model.vocab_size, (3, 1))
        out = notes or model.vocab_size
        super().__init__("step", exportable(model),
                         {"inputs": ["batch", 1, *size], **shapes},
                         {"outputs": ["batch", 1, out],
                          **{f"{s}_out": shape for s, shape in shapes.items()}},
                         (example, *(torch.zeros(rnn.num_layers, 3, n)
                                     for n in rnn.state_sizes)))

    def forward(self, inputs: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, state = self.model(inputs, state if len(state) == 2 else state[0])
        return (out, *(state if isinstance(state, tuple) else (state,)))


def _lengths(batch: int, longest: int) -> Tensor:
    """Example lengths for tracing: the longest first, then shorter ones."""
    return torch.tensor([longest] + [max(1, longest - 1 - i) for i in range(batch - 1)])


class ClassifierGraph(Graph):
    def __init__(self, model: nn.Module) -> None:
        tokens, lengths = torch.randint(2, model.embed.num_embeddings, (3, 6)), _lengths(3, 6)
        super().__init__("model", exportable(model),
                         {"tokens": ["batch", "time"], "lengths": ["batch"]},
                         {"logits": ["batch", model.out.out_features]}, (tokens, lengths))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.model(tokens, lengths)


class TaggerGraph(Graph):
    """Tag scores and the best path: Viterbi under the CRF, else the best tag per token."""

    def __init__(self, model: nn.Module) -> None:
        lengths = _lengths(3, 6)
        mask = length_mask(lengths, 6)
        words = torch.randint(2, model.words.num_embeddings, (3, 6)) * mask
        cases = torch.randint(1, model.cases.num_embeddings if model.cases else 2, (3, 6)) * mask
        num_chars = model.chars.embed.num_embeddings if model.chars else 3
        chars = torch.randint(1, num_chars, (3, 6, 4)) * mask[..., None]
        super().__init__("model", exportable(model),
                         {"words": ["batch", "time"], "cases": ["batch", "time"],
                          "chars": ["batch", "time", "word_length"], "lengths": ["batch"]},
                         {"scores": ["batch", "time", model.out.out_features],
                          "tags": ["batch", "time"]},
                         (words, cases, chars, lengths))
        self.viterbi = torch.jit.script(best_paths)

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor,
                lengths: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.model(words, cases, chars, lengths)
        mask = length_mask(lengths, words.size(1))
        if self.model.crf is None:
            return scores, scores.argmax(-1).masked_fill(~mask, 0)
        tags, _ = self.viterbi(scores, mask, *self.model.crf._potentials(float("-inf")))
        return scores, tags


# what a seq2seq state holds, and its shape (N: rows; S: source positions)
STATE_SHAPES = {"memory": ["batch", "source", "memory"], "keys": ["batch", "source", "keys"],
                "mask": ["batch", "source"], "feed": ["batch", "feed"],
                "h": ["batch", "layers", "hidden"], "c": ["batch", "layers", "hidden"],
                "coverage": ["batch", "source"], "src_ext": ["batch", "source"],
                "ext": ["batch", "extended"]}
CHANGING = ("feed", "h", "c", "coverage")  # what a step updates; the rest passes through
ADDED = ("src_ext", "ext")  # a copying model's: given to the step, not made by the encoder


def _fixed(shape: list, example: Tensor) -> list:
    """A state shape with its sizes that are not dynamic (layers, hidden, ...) as ints."""
    return [d if d in ("batch", "source", "extended") else example.size(i)
            for i, d in enumerate(shape)]


class Seq2SeqEncoder(Graph):
    def __init__(self, model: nn.Module) -> None:
        model = exportable(model)
        src, lengths = torch.randint(4, model.src_embed.num_embeddings, (3, 7)), _lengths(3, 7)
        state = model.encode(src, lengths)
        self.names = [n for n in state if n not in ADDED]
        super().__init__("encoder", model, {"src": ["batch", "source"],
                                            "src_lengths": ["batch"]},
                         {n: _fixed(STATE_SHAPES[n], state[n]) for n in self.names},
                         (src, lengths))
        self.state = state

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        state = self.model.encode(src, src_lengths)
        return tuple(state[n] for n in self.names)


class Seq2SeqStep(Graph):
    def __init__(self, model: nn.Module, encoder: Seq2SeqEncoder) -> None:
        state = dict(encoder.state)
        if model.copy:  # two unknown source words extend the vocabulary
            state["ext"] = state["memory"].new_zeros(len(state["mask"]), 2)
        self.names = list(state)
        self.changing = [n for n in CHANGING if n in state]
        tokens = torch.tensor([model.bos_index] * len(state["mask"]))
        vocab = model.vocab_size if not model.copy else f"{model.vocab_size} + extended"
        super().__init__("step", exportable(model),
                         {"tokens": ["batch"],
                          **{n: _fixed(STATE_SHAPES[n], state[n]) for n in self.names}},
                         {"log_probs": ["batch", vocab],
                          **{f"{n}_out": _fixed(STATE_SHAPES[n], state[n])
                             for n in self.changing}},
                         (tokens, *state.values()))
        self.meta = {"tokens": {"bos": model.bos_index, "eos": model.eos_index,
                                "vocab_size": model.vocab_size, "copy": model.copy}}

    def forward(self, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        log_probs, new = self.model.step(tokens, dict(zip(self.names, state)))
        return (log_probs, *(new[n] for n in self.changing))
