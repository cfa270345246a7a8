"""Export a trained model to TorchScript and ONNX, with what it needs to run on its own.

What is exported is each model's *step*, one time step: tensors in, tensors out, the
recurrent state passed explicitly, so any runtime can drive it over sequences of any length
(a priming, sampling or search loop lives outside the graph; ``ExportedStep`` plugs an
exported file into seqkit's decoding library):

| task  | module       | inputs                                   | outputs                      |
|-------|--------------|------------------------------------------|------------------------------|
| lm    | ``LMStep``   | tokens (B, 1) int64, state (L, B, H) x k | logits (B, 1, V), state x k  |
| music | ``MusicStep``| frames (B, 1, 88) float32, state x k     | logits (B, 1, 88), state x k |

k = 2 for an LSTM (h, c), 1 for a GRU or RNN. The batch B is dynamic in both formats; the
time axis is one step (torch's LSTM decomposition for ONNX unrolls time, so a dynamic length
would be fixed at the example's anyway). The folder
also gets ``artifacts.json`` (vocabulary, model config) and ``export.json`` (file names, input
and output names and shapes). Classification, tagging and seq2seq models are not exported
yet: their encoders pack variable-length batches (``pack_padded_sequence``), which neither
tracing nor ``torch.export`` turns into a graph with dynamic lengths.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data.cache import replace_atomically

FORMATS = ("torchscript", "onnx")


class RecurrentStep(nn.Module):
    """A model whose ``forward(inputs, state)`` returns ``(outputs, state)``, with the state
    as separate tensors: ``forward(inputs, h[, c]) -> (outputs, h[, c])``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_states = 2 if model.rnn.cells[0].has_cell_state else 1

    def forward(self, inputs: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        if c is None:  # a GRU or RNN
            out, h = self.model(inputs, h)
            return out, h
        out, (h, c) = self.model(inputs, (h, c))
        return out, h, c

    def example(self, batch: int = 3, steps: int = 1) -> tuple[Tensor, ...]:
        rnn = self.model.rnn
        state = tuple(torch.zeros(rnn.num_layers, batch, n) for n in rnn.cells[0].state_sizes())
        return (self.example_inputs(batch, steps), *state)


class LMStep(RecurrentStep):
    def example_inputs(self, batch: int, steps: int) -> Tensor:
        return torch.randint(0, self.model.vocab_size, (batch, steps))


class MusicStep(RecurrentStep):
    def example_inputs(self, batch: int, steps: int) -> Tensor:
        return torch.bernoulli(torch.full((batch, steps, self.model.num_notes), 0.1))


STEPS = {"lm": LMStep, "music": MusicStep}


def _names(step: RecurrentStep) -> tuple[list[str], list[str]]:
    states = ["h", "c"][:step.num_states]
    return ["inputs", *states], ["outputs", *(f"{s}_out" for s in states)]


def export(checkpoint: str | Path, out: str | Path, formats=FORMATS) -> dict:
    """Write the checkpoint's model step to ``out`` in the given formats; returns the manifest
    (also written as ``export.json``)."""
    from .predict import load

    model, artifacts = load(checkpoint)
    task = artifacts.get("task")
    if task not in STEPS:
        raise ValueError(f"{checkpoint}: exporting a {task} model is not supported yet "
                         f"(supported: {', '.join(STEPS)}); see seqkit.export")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
    step = STEPS[task](model.float()).eval()
    example = step.example()
    inputs, outputs = _names(step)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"task": task, "inputs": inputs, "outputs": outputs, "files": {},
                "state_shape": ["num_layers", "batch", "hidden"],
                "inputs_shape": ["batch", 1] + (["notes"] if task == "music" else [])}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter chatter
        if "torchscript" in formats:
            traced = torch.jit.trace(step, example, check_trace=False)
            replace_atomically(out / "model.ts", lambda tmp: traced.save(tmp))
            manifest["files"]["torchscript"] = "model.ts"
        if "onnx" in formats:
            batch = torch.export.Dim("batch")
            shapes = ({0: batch}, *({1: batch} for _ in range(step.num_states)))
            program = torch.onnx.export(step, example, dynamo=True, input_names=inputs,
                                        output_names=outputs, dynamic_shapes=shapes,
                                        verbose=False)
            replace_atomically(out / "model.onnx", lambda tmp: program.save(tmp))
            manifest["files"]["onnx"] = "model.onnx"
    (out / "artifacts.json").write_text(json.dumps(artifacts, indent=1) + "\n")
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class ExportedStep:
    """An exported step (``model.ts`` or ``model.onnx``) as seqkit's decoding ``Step`` for a
    language model: ``(tokens (N,), state) -> (log_probs (N, V), state)``, the state a tuple of
    batch-first (N, L, H) tensors (None at the start), so ``seqkit.decoding`` can drive it."""

    def __init__(self, path: str | Path, num_states: int, num_layers: int, hidden: int) -> None:
        path = Path(path)
        self.num_states, self.num_layers, self.hidden = num_states, num_layers, hidden
        if path.suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path),
                                                   providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            self.run = lambda *xs: [torch.from_numpy(np.asarray(y)) for y in session.run(
                None, {n: x.numpy() for n, x in zip(names, xs)})]
        else:
            module = torch.jit.load(str(path))
            self.run = lambda *xs: list(module(*xs))

    def __call__(self, tokens: Tensor, state):
        if state is None:
            state = tuple(torch.zeros(len(tokens), self.num_layers, self.hidden)
                          for _ in range(self.num_states))
        outputs = self.run(tokens[:, None], *(s.transpose(0, 1).contiguous() for s in state))
        log_probs = outputs[0][:, -1].log_softmax(-1)
        return log_probs, tuple(s.transpose(0, 1) for s in outputs[1:])
