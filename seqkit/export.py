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

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data.cache import replace_atomically
from .graphs import Graph, Packed, exportable  # noqa: F401 (exportable, Packed: public here)
from .inference import load
from .layers.recurrent import Recurrent

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
ONNX_OPSET = 17


def export(checkpoint: str | Path, out: str | Path, formats=FORMATS) -> dict:
    """Write the checkpoint's graphs to ``out`` in the given formats; returns the manifest
    (also written as ``export.json``)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    predictor = load(checkpoint)
    model = predictor.model
    if "onnx" in formats and any(isinstance(m, Recurrent) and m.proj_size
                                 for m in model.modules()):
        raise ValueError(f"{checkpoint}: ONNX's LSTM operator has no projection (proj_size): "
                         f"export it as TorchScript (--format torchscript)")
    model.float()
    try:
        parts = predictor.graphs()
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"task": predictor.task, "graphs": {}}
    for graph in parts:
        graph.eval()
        manifest["graphs"][graph.name] = {"inputs": graph.inputs, "outputs": graph.outputs,
                                          "files": _write(graph, out, formats)}
        manifest.update(graph.meta)
    (out / "artifacts.json").write_text(json.dumps(predictor.artifacts, indent=1,
                                                   default=_base64) + "\n")
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _base64(value):
    """A tokenizer's model bytes (sentencepiece protos) in artifacts.json, as base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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
