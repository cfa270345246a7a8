"""Export a trained model to TorchScript and ONNX, with what it needs to run on its own.

Each task exports one or two graphs; every dimension named below is dynamic, in both formats:

    sentiment      model    tokens (B, T), lengths (B,) -> logits (B, classes)
    ner            model    words, cases (B, T), chars (B, T, W), lengths (B,)
                            -> scores (B, T, tags), tags (B, T) (Viterbi; 0 past ends)
    translation,   encoder  src (B, S), src_lengths (B,) -> the decoding state
    summarization           (memory, keys, mask, [feed,] h[, c, coverage])
                   step     tokens (B,) and that state -> log_probs (B, V), new state
    lm, music      step     inputs (B, 1) or (B, 1, 88), h[, c] -> outputs (B, 1, V), h[, c]

(h and c are (layers, B, hidden) for lm and music, batch-first (B, layers, hidden) in a
seq2seq state, as seqkit.decoding wants.) A step is one time step with the recurrent state
passed explicitly, so any runtime drives it over sequences of any length; the search loop
lives outside the graph (``ExportedSeq2Seq`` and ``ExportedStep`` plug exported files into
seqkit's decoding library). Variable-length batches run as in training: the encoders pack
by length, which both formats keep (TorchScript as ``_pack_padded_sequence``, ONNX as the
``sequence_lens`` of its LSTM/GRU/RNN operators), and the tagger's Viterbi is a scripted
loop over time. The folder also gets ``artifacts.json`` (vocabulary, model config) and
``export.json`` (graphs, files, input and output names and shapes).
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data.cache import replace_atomically
from .layers import length_mask
from .layers.crf import best_paths
from .layers.cudnn import fused_run
from .layers.recurrent import Recurrent

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
ONNX_OPSET = 17


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


class LMStep(Graph):
    """A language or music model's step: ``(inputs, h[, c]) -> (outputs, h[, c])``."""

    def __init__(self, model: nn.Module, task: str) -> None:
        rnn = model.rnn
        shapes = {name: [rnn.num_layers, "batch", n]  # h has proj_size features, c hidden
                  for name, n in zip(("h", "c"), rnn.state_sizes)}
        if task == "music":
            size, example = [model.num_notes], torch.bernoulli(torch.full((3, 1, 88), 0.1))
        else:
            size, example = [], torch.randint(0, model.vocab_size, (3, 1))
        out = model.num_notes if task == "music" else model.vocab_size
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

    def forward(self, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        log_probs, new = self.model.step(tokens, dict(zip(self.names, state)))
        return (log_probs, *(new[n] for n in self.changing))


def graphs(model: nn.Module, task: str) -> list[Graph]:
    """The graphs that export ``model`` of ``task``."""
    if task in ("lm", "music"):
        return [LMStep(model, task)]
    if task == "sentiment":
        return [ClassifierGraph(model)]
    if task == "ner":
        return [TaggerGraph(model)]
    if task in ("translation", "summarization"):
        encoder = Seq2SeqEncoder(model)
        return [encoder, Seq2SeqStep(model, encoder)]
    raise ValueError(f"exporting a {task} model is not supported")


def export(checkpoint: str | Path, out: str | Path, formats=FORMATS) -> dict:
    """Write the checkpoint's graphs to ``out`` in the given formats; returns the manifest
    (also written as ``export.json``)."""
    from .predict import load

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    model, artifacts = load(checkpoint)
    task = artifacts.get("task")
    if "onnx" in formats and any(isinstance(m, Recurrent) and m.proj_size
                                 for m in model.modules()):
        raise ValueError(f"{checkpoint}: ONNX's LSTM operator has no projection (proj_size): "
                         f"export it as TorchScript (--format torchscript)")
    try:
        parts = graphs(model.float(), task)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"task": task, "graphs": {}}
    for graph in parts:
        graph.eval()
        manifest["graphs"][graph.name] = {"inputs": graph.inputs, "outputs": graph.outputs,
                                          "files": _write(graph, out, formats)}
    if task in ("translation", "summarization"):
        manifest["tokens"] = {"bos": model.bos_index, "eos": model.eos_index,
                              "vocab_size": model.vocab_size, "copy": model.copy}
    (out / "artifacts.json").write_text(json.dumps(artifacts, indent=1) + "\n")
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write(graph: Graph, out: Path, formats) -> dict[str, str]:
    """Trace ``graph`` into each format; returns the file names."""
    files = {fmt: graph.name + SUFFIX[fmt] for fmt in formats}
    names = {**graph.inputs, **graph.outputs}
    dynamic = {n: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
               for n, shape in names.items()}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter chatter
        if "torchscript" in formats:
            traced = torch.jit.trace(graph, graph.example, check_trace=False)
            replace_atomically(out / files["torchscript"], lambda tmp: traced.save(tmp))
        if "onnx" in formats:
            # the TorchScript-based exporter: it maps packed sequences to ONNX's sequence_lens
            replace_atomically(out / files["onnx"], lambda tmp: torch.onnx.export(
                graph, graph.example, tmp, dynamo=False, input_names=list(graph.inputs),
                output_names=list(graph.outputs), dynamic_axes=dynamic,
                opset_version=ONNX_OPSET))
    return files


# -- running exported files --------------------------------------------------------------------
class Runtime:
    """An exported graph file, called with tensors (in its inputs' order) -> list of tensors.
    ONNX files run under onnxruntime on CPU, TorchScript under torch.jit."""

    def __init__(self, path: str | Path, inputs: list[str]) -> None:
        path = Path(path)
        if path.suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path),
                                                   providers=["CPUExecutionProvider"])
            kept = {i.name for i in session.get_inputs()}  # the exporter drops unused ones

            def run(*xs: Tensor) -> list[Tensor]:
                feed = {n: x.numpy() for n, x in zip(inputs, xs) if n in kept}
                return [torch.from_numpy(np.asarray(y)) for y in session.run(None, feed)]
            self.run = run
        else:
            module = torch.jit.load(str(path))

            def run(*xs: Tensor) -> list[Tensor]:
                out = module(*xs)
                return [out] if isinstance(out, Tensor) else list(out)
            self.run = run

    def __call__(self, *xs: Tensor) -> list[Tensor]:
        return self.run(*xs)


def read_manifest(folder: str | Path) -> dict:
    """An export folder's ``export.json``."""
    return json.loads((Path(folder) / "export.json").read_text())


def load_graph(folder: str | Path, graph: str, fmt: str = "onnx",
               spec: dict | None = None) -> Runtime:
    """The graph ``graph`` of an export folder in format ``fmt`` (``spec``: the folder's
    manifest, when already read)."""
    spec = (spec or read_manifest(folder))["graphs"][graph]
    return Runtime(Path(folder) / spec["files"][fmt], list(spec["inputs"]))


class ExportedStep:
    """An exported language model step as seqkit's decoding ``Step``:
    ``(tokens (N,), state) -> (log_probs (N, V), state)``, the state a tuple of batch-first
    (N, L, H) tensors (None at the start), so ``seqkit.decoding`` can drive it."""

    def __init__(self, folder: str | Path, fmt: str = "onnx") -> None:
        spec = read_manifest(folder)
        self.graph = load_graph(folder, "step", fmt, spec)
        inputs = spec["graphs"]["step"]["inputs"]
        self.states = [inputs[n] for n in ("h", "c") if n in inputs]

    def __call__(self, tokens: Tensor, state):
        if state is None:
            state = tuple(torch.zeros(len(tokens), L, H) for L, _, H in self.states)
        outputs = self.graph(tokens[:, None], *(s.transpose(0, 1).contiguous() for s in state))
        log_probs = outputs[0][:, -1].log_softmax(-1)
        return log_probs, tuple(s.transpose(0, 1) for s in outputs[1:])


class ExportedSeq2Seq:
    """An exported encoder-decoder with the interface ``seqkit.tasks.seq2seq.generate``
    drives (``encode``, ``step``, ``bos_index``, ``eos_index``): greedy and beam search run
    over the exported step exactly as over the model."""

    def __init__(self, folder: str | Path, fmt: str = "onnx") -> None:
        spec = read_manifest(folder)
        self.encoder, self.decoder = (load_graph(folder, g, fmt, spec)
                                      for g in ("encoder", "step"))
        self.names = list(spec["graphs"]["encoder"]["outputs"])
        self.inputs = list(spec["graphs"]["step"]["inputs"])[1:]
        outputs = list(spec["graphs"]["step"]["outputs"])[1:]
        self.changing = [n.removesuffix("_out") for n in outputs]
        # what the step never changes: the beams of a sentence share it
        self.static_state = tuple(n for n in [*self.names, "src_ext", "ext"]
                                  if n not in self.changing)
        tokens = spec["tokens"]
        self.bos_index, self.eos_index = tokens["bos"], tokens["eos"]
        self.vocab_size, self.copy = tokens["vocab_size"], tokens["copy"]

    def encode(self, src: Tensor, src_lengths: Tensor, src_ext: Tensor | None = None,
               n_ext: int = 0) -> dict[str, Tensor]:
        state = dict(zip(self.names, self.encoder(src, src_lengths)))
        if self.copy:
            state["src_ext"] = src if src_ext is None else src_ext
            state["ext"] = state["memory"].new_zeros(len(src), n_ext)
        return state

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict]:
        outputs = self.decoder(tokens, *(state[n] for n in self.inputs))
        return outputs[0], {**state, **dict(zip(self.changing, outputs[1:]))}
