"""``seqkit.load(ckpt)``: a trained model as one object for its task, from the checkpoint alone.

    clf = seqkit.load("outputs/sentiment/<run>/checkpoints/best-epoch03.ckpt")
    clf.predict(["a gripping , funny film"])   # [{"text": ..., "label": "1", "probs": {...}}]
    seqkit.load(ner_ckpt).predict(["U.N. official Ekeus heads for Baghdad ."])
    seqkit.load(mt_ckpt).predict(["Ein Mann fährt Fahrrad ."], beam_size=5)
    seqkit.load(lm_ckpt).generate("ROMEO:", length=200, seed=0)
    seqkit.load(music_ckpt).generate("samples/", num_samples=2)

``predict`` returns the rows ``seqkit predict`` prints (one per text; ``show`` gives a row as
printed), ``generate`` what ``seqkit generate`` writes or prints, ``graphs`` what
``seqkit export`` writes, ``gate_traces`` what ``seqkit gates`` plots. The object holds
``model`` (eval mode) and ``artifacts``; the checkpoint is read safely (``seqkit.checkpoint``)
and names the class to build (``artifacts["predictor"]``, one of ``PREDICTORS``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class Predictor:
    """A trained model and what it needs to read raw input (vocabulary, labels, ...)."""

    def __init__(self, model: nn.Module, artifacts: dict) -> None:
        self.model, self.artifacts = model, artifacts
        self.task = artifacts.get("task")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, task={self.task!r})"

    def show(self, row) -> str:
        """A row of ``predict`` as ``seqkit predict`` prints it: a JSON line."""
        return json.dumps(row, ensure_ascii=False)

    def graphs(self) -> list:
        """The graphs ``seqkit.export`` writes for this model (``seqkit.graphs``)."""
        raise ValueError(f"exporting a {self.task} model is not supported")

    @property
    def encoder(self):
        """The model's recurrent encoder, whose gates ``gate_traces`` follows."""
        from .layers import Recurrent

        layer = getattr(self.model, "encoder", None) or getattr(self.model, "rnn", None)
        if not isinstance(layer, Recurrent):
            raise ValueError(f"a {self.task} model has no recurrent encoder to trace")
        return layer

    def gate_traces(self, text: str) -> tuple[list[dict], list[str] | None]:
        """The encoder's gates and states over ``text`` (``seqkit.layers.gate_trace``: one
        dict per layer and direction) and the steps' labels (None: steps are numbered)."""
        from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

        from .layers import gate_trace

        layer, inputs = self.encoder, []
        hook = layer.register_forward_pre_hook(lambda m, a, kw: inputs.append(a[0]),
                                               with_kwargs=True)
        try:
            labels = self._read(text)
        finally:
            hook.remove()
        x = inputs[0]
        if isinstance(x, PackedSequence):
            x = pad_packed_sequence(x, batch_first=layer.batch_first)[0]
        sequence = x[0] if layer.batch_first else x[:, 0]
        return gate_trace(layer, sequence[:len(labels)] if labels else sequence), labels

    def _read(self, text: str) -> list[str] | None:
        """Run the model on ``text``; the labels of its steps."""
        raise ValueError(f"a {self.task} model takes no text to trace")


class Classifier(Predictor):
    def predict(self, texts: list[str], batch_size: int = 256) -> list[dict]:
        """Label and class probabilities of each text (a blank one: label None)."""
        from .predict import classify

        return _batched(classify, self, texts, batch_size)

    def graphs(self) -> list:
        from .graphs import ClassifierGraph

        return [ClassifierGraph(self.model)]

    def _read(self, text: str) -> list[str]:
        from .data.text import splitter_of, tokenize

        self.predict([text])
        return tokenize(text, self.artifacts.get("lower", True), splitter_of(self.artifacts))


class Tagger(Predictor):
    def predict(self, texts: list[str], tokenizer: str = "simple",
                batch_size: int = 256) -> list[dict]:
        """Tokens, tags and entity spans of each text (``tokenizer``: simple, whitespace)."""
        from .predict import tag

        return _batched(tag, self, texts, batch_size, tokenizer)

    def show(self, row: dict, format: str = "json") -> str:
        """A JSON line, or with ``format="conll"`` one ``token tag`` line per token and a
        blank line after the sentence."""
        if format == "conll":
            return "".join(f"{w} {t}\n" for w, t in zip(row["tokens"], row["tags"]))
        return super().show(row)

    def graphs(self) -> list:
        from .graphs import TaggerGraph

        return [TaggerGraph(self.model)]

    def _read(self, text: str) -> list[str]:
        return self.predict([text])[0]["tokens"]


class Transducer(Predictor):
    """Translation and summarization."""

    def predict(self, texts: list[str], beam_size: int | None = None,
                batch_size: int | None = 256, **options) -> list[str]:
        """The output text of each, decoded shortest first in batches of ``batch_size`` (see
        ``seqkit.predict.transduce`` for the options)."""
        from .predict import transduce

        return transduce(self.model, self.artifacts, list(texts), beam_size, batch_size,
                         **options)

    def show(self, row: str) -> str:
        return row

    def graphs(self) -> list:
        from .graphs import Seq2SeqEncoder, Seq2SeqStep

        encoder = Seq2SeqEncoder(self.model)
        return [encoder, Seq2SeqStep(self.model, encoder)]

    def _read(self, text: str) -> None:
        self.predict([text], beam_size=1)
        return None  # the encoder reads subword or word ids: steps are numbered


class TextGenerator(Predictor):
    """A language model."""

    def generate(self, prime: str = "\n", length: int = 500, num_samples: int = 1,
                 stop: str | None = None, seed: int | None = 0, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0) -> list[str]:
        """Texts continuing ``prime``: up to ``length`` tokens each, ending at ``stop``;
        sampled at ``temperature`` from the ``top_k`` likeliest or the nucleus of mass
        ``top_p`` (0 and 1: all)."""
        from .tasks.lm import generate_text

        return generate_text(self.model, self.artifacts, prime, length, num_samples, stop,
                             seed, temperature=temperature, top_k=top_k, top_p=top_p)

    def graphs(self) -> list:
        from .graphs import LMStep

        return [LMStep(self.model)]

    def _read(self, text: str) -> list[str]:
        from .data.lm import tokens
        from .data.text import splitter_of
        from .data.vocab import Vocab

        labels = tokens(text, self.artifacts["level"], splitter_of(self.artifacts))
        if not labels:
            raise ValueError("no tokens in the text")
        vocab = Vocab.from_state_dict(self.artifacts["vocab"])
        with torch.no_grad():
            self.model(torch.tensor([vocab.encode(labels)], dtype=torch.long))
        return labels


class MusicGenerator(Predictor):
    """A piano-roll model."""

    def generate(self, out: str | Path = "samples", num_samples: int = 4,
                 num_frames: int = 128, temperature: float = 1.0, seed: int = 0,
                 primer=None, wav: bool = False) -> list[Path]:
        """Pieces from scratch and as many continuing ``primer`` (a MIDI, .npy or .npz file,
        or a (T, 88) roll; default: the test piece's start stored in the checkpoint), as MIDI
        and piano-roll PNG files in the folder ``out``, with ``wav`` also as audio. Returns
        the MIDI (and WAV) paths."""
        from .tasks.music import write_samples

        if isinstance(primer, (str, Path)):
            from .data.music import read_rolls

            primer = torch.from_numpy(read_rolls(primer, self.artifacts["fs"])[0]).float()
        return write_samples(self.model, self.artifacts, Path(out), num_samples, num_frames,
                             temperature, seed, primer, wav)

    def graphs(self) -> list:
        from .graphs import LMStep

        return [LMStep(self.model)]


def _batched(run, predictor: Predictor, texts: list[str], batch_size: int, *args) -> list:
    """``run(model, artifacts, chunk, *args)`` over ``texts``, ``batch_size`` at a time."""
    texts = list(texts)
    return [row for start in range(0, len(texts), batch_size)
            for row in run(predictor.model, predictor.artifacts,
                           texts[start:start + batch_size], *args)]


PREDICTORS = {kind.__name__: kind for kind in (Classifier, Tagger, Transducer, TextGenerator,
                                                MusicGenerator)}
# checkpoints written before they named their predictor
_BY_TASK = {"sentiment": "Classifier", "ner": "Tagger", "translation": "Transducer",
            "summarization": "Transducer", "lm": "TextGenerator", "music": "MusicGenerator"}


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """The object for a checkpoint's task: Classifier, Tagger, Transducer, TextGenerator or
    MusicGenerator, as the checkpoint names it."""
    from .checkpoint import CheckpointError
    from .predict import load as load_model

    model, artifacts = load_model(checkpoint, device)
    name = artifacts.get("predictor", _BY_TASK.get(artifacts.get("task")))
    if not isinstance(name, str) or name not in PREDICTORS:
        raise CheckpointError(f"{checkpoint}: names a predictor {name!r} (task "
                              f"{artifacts.get('task')!r}); seqkit has {', '.join(PREDICTORS)}")
    return PREDICTORS[name](model, artifacts)
