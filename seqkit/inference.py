"""``seqkit.load(ckpt)``: a trained model as one object for its task, from the checkpoint alone.

    clf = seqkit.load("outputs/sentiment/<run>/checkpoints/best-epoch03.ckpt")
    clf.predict(["a gripping , funny film"])   # [{"text": ..., "label": "1", "probs": {...}}]
    seqkit.load(ner_ckpt).predict(["U.N. official Ekeus heads for Baghdad ."])
    seqkit.load(mt_ckpt).predict(["Ein Mann fährt Fahrrad ."], beam_size=5)
    seqkit.load(lm_ckpt).generate("ROMEO:", length=200, seed=0)
    seqkit.load(music_ckpt).generate("samples/", num_samples=2)

``predict`` returns what ``seqkit predict`` prints (one row per text), ``generate`` what
``seqkit generate`` writes or prints. The object holds ``model`` (eval mode) and ``artifacts``;
the checkpoint is read safely (``seqkit.checkpoint``).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn


class Predictor:
    """A trained model and what it needs to read raw input (vocabulary, labels, ...)."""

    def __init__(self, model: nn.Module, artifacts: dict) -> None:
        self.model, self.artifacts = model, artifacts
        self.task = artifacts.get("task")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, task={self.task!r})"


class Classifier(Predictor):
    def predict(self, texts: list[str]) -> list[dict]:
        """Label and class probabilities of each text (a blank one: label None)."""
        from .predict import classify

        return classify(self.model, self.artifacts, list(texts))


class Tagger(Predictor):
    def predict(self, texts: list[str], tokenizer: str = "simple") -> list[dict]:
        """Tokens, tags and entity spans of each text (``tokenizer``: simple, whitespace)."""
        from .predict import tag

        return tag(self.model, self.artifacts, list(texts), tokenizer)


class Transducer(Predictor):
    """Translation and summarization."""

    def predict(self, texts: list[str], beam_size: int | None = None, **options) -> list[str]:
        """The output text of each (see ``seqkit.predict.transduce`` for the options)."""
        from .predict import transduce

        return transduce(self.model, self.artifacts, list(texts), beam_size, **options)


class TextGenerator(Predictor):
    def generate(self, prime: str = "\n", length: int = 500, num_samples: int = 1,
                 stop: str | None = None, seed: int | None = 0, **options) -> list[str]:
        """Texts continuing ``prime`` (options: temperature, top_k, top_p)."""
        from .tasks.lm import generate_text

        return generate_text(self.model, self.artifacts, prime, length, num_samples, stop,
                             seed, **options)


class MusicGenerator(Predictor):
    def generate(self, out: str | Path, num_samples: int = 4, num_frames: int = 128,
                 temperature: float = 1.0, seed: int = 0, primer=None,
                 wav: bool = False) -> list[Path]:
        """Pieces from scratch and continuing ``primer`` (a (T, 88) roll; default: the one in
        the checkpoint) as MIDI, piano-roll PNG and with ``wav`` audio files in ``out``."""
        from .tasks.music import write_samples

        return write_samples(self.model, self.artifacts, Path(out), num_samples, num_frames,
                             temperature, seed, primer, wav)


PREDICTORS = {"sentiment": Classifier, "ner": Tagger, "translation": Transducer,
              "summarization": Transducer, "lm": TextGenerator, "music": MusicGenerator}


def load(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """The object for a checkpoint's task: Classifier, Tagger, Transducer, TextGenerator or
    MusicGenerator."""
    from .checkpoint import CheckpointError
    from .predict import load as load_model

    model, artifacts = load_model(checkpoint, device)
    kind = PREDICTORS.get(artifacts.get("task"))
    if kind is None:
        raise CheckpointError(f"{checkpoint}: a checkpoint of an unknown task "
                              f"{artifacts.get('task')!r}; seqkit knows {sorted(PREDICTORS)}")
    return kind(model, artifacts)
