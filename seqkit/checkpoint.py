"""Reading checkpoints that may come from someone else: nothing in the file is ever run.

A seqkit checkpoint is Lightning's dict of tensors and plain values, plus ``"seqkit"``: the
artifacts (model config, vocabularies, labels, ...) as dicts, lists, str, int, float, bool,
None, bytes and tensors. It is read with torch's weights-only unpickler, which refuses any
other object (a pickle that would call ``os.system`` names that function and stops), and a
model is built from it only when every class its config names is one of seqkit's own.
"""
from __future__ import annotations

import functools
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .errors import first_line, printable

FORMAT = 2  # the artifacts' layout; a reader refuses a version it does not know
MODELS = ("seqkit.models.classifier.SentenceClassifier", "seqkit.models.tagger.Tagger",
          "seqkit.models.seq2seq.Seq2Seq", "seqkit.models.lm.LanguageModel",
          "seqkit.models.music.PianoRollLM")
# the pieces a model's config may hand it (format 2: encoders, decoders, ... as partials)
PARTS = tuple(f"seqkit.layers.{name}" for name in ("Recurrent", "RNN", "GRU", "LSTM")) + tuple(
    f"seqkit.cells.{name}Cell" for name in ("RNN", "GRU", "LSTM")) + tuple(
    f"seqkit.models.attention.{name}Attention" for name in ("Dot", "General", "Additive")) + tuple(
    f"seqkit.models.seq2seq.{name}" for name in ("Decoder", "InputFedDecoder", "Coverage",
                                                 "Generator", "CopyGenerator"))


class CheckpointError(ValueError):
    """A file that is not a usable seqkit checkpoint; the message names the file and why, on
    one line: what it quotes from a damaged file (a key, a class name) may hold any byte."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def read(path: str | Path, map_location=None, mmap: bool = False) -> dict:
    """The checkpoint at ``path`` as a dict, read weights-only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True,
                          mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:  # an object of a class or a call: what an exploit needs
            raise CheckpointError(f"{path}: refused to load: it asks to call {found.group(1)}; "
                                  f"a checkpoint holds tensors and plain values only") from None
        detail = str(e).partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail or first_line(e)})") \
            from None
    except Exception as e:  # truncated, corrupt, or not torch's format at all
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(e)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (it holds a {type(ckpt).__name__}, "
                              f"not a dict)")
    return ckpt


def artifacts(ckpt: dict, path: str | Path) -> dict:
    """The seqkit artifacts of a checkpoint read by ``read``, checked for their format."""
    found = ckpt.get("seqkit")
    if not isinstance(found, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a seqkit checkpoint (no 'seqkit' artifacts and "
                              f"'state_dict' in it)")
    version = found.get("format", 1)  # checkpoints from before versioning are format 1
    if version == 1:  # seqkit 0.1 (models built from cell names): read as format 2
        try:
            found["model"] = _upgrade_config(found.get("model"))
        except (TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: a model config of seqkit 0.1 that does not read "
                                  f"({first_line(e)})") from None
        ckpt["state_dict"] = _upgrade_keys(ckpt["state_dict"])
        found["format"] = FORMAT
    elif version != FORMAT:
        raise CheckpointError(f"{path}: artifacts of format {version!r}; this seqkit reads "
                              f"formats 1 and {FORMAT} (a newer seqkit wrote it?)")
    return found


def _upgrade_config(config):
    """A format-1 model config (``cell``, ``backend``, ``cell_options``, ``hidden_size``, ...)
    as format 2's (``encoder`` and, for Seq2Seq, ``decoder``/``generator`` partials)."""
    if not isinstance(config, dict) or "encoder" in config:
        return config
    old, target = dict(config), str(config.get("_target_", ""))
    layer = f"seqkit.layers.{str(old.pop('cell', 'lstm')).upper()}"
    hidden, layers, dropout = _V1_DEFAULTS.get(target.rpartition(".")[2], (256, 1, 0.3))
    hidden, layers = old.pop("hidden_size", hidden), old.pop("num_layers", layers)

    def rnn(hidden_size: int, bidirectional: bool) -> dict:
        return {"_target_": layer, "_partial_": True, "hidden_size": hidden_size,
                "num_layers": layers, "bidirectional": bidirectional,
                "dropout": old.get("dropout", dropout), "batch_first": True,
                "backend": old.get("backend", "auto"), **(old.get("cell_options") or {})}

    def scorer(kind: str) -> dict:
        return {"_target_": f"seqkit.models.attention.{kind.capitalize()}Attention",
                "_partial_": True}

    if target.endswith("Seq2Seq"):
        new = {"encoder": rnn(hidden // 2, True), "tokens": {
            name: old.pop(f"{name}_index", default)
            for name, default in (("pad", 0), ("unk", 1), ("bos", 2), ("eos", 3))}}
        new["decoder"] = {
            "_target_": "seqkit.models.seq2seq." + (
                "InputFedDecoder" if old.pop("input_feed", True) else "Decoder"),
            "_partial_": True, "rnn": rnn(hidden, False),
            "attention": scorer(old.pop("attention", "general")),
            "coverage": {"_target_": "seqkit.models.seq2seq.Coverage", "_partial_": True}
            if old.pop("coverage", False) else None}
        new["generator"] = {"_target_": "seqkit.models.seq2seq." + (
            "CopyGenerator" if old.pop("copy", False) else "Generator"), "_partial_": True}
    else:
        new = {"encoder": rnn(hidden, old.pop("bidirectional", "Tagger" in target
                                              or "Classifier" in target))}
        if target.endswith("PianoRollLM") and old.get("attention"):
            new["attention"] = scorer(old.pop("attention"))
    for key in ("backend", "cell_options"):
        old.pop(key, None)
    return {**old, **new}


# 0.1's defaults (hidden_size, num_layers, dropout) per model, for configs that omit them
_V1_DEFAULTS = {"SentenceClassifier": (256, 1, 0.5), "Tagger": (200, 1, 0.5),
                "LanguageModel": (512, 2, 0.25), "PianoRollLM": (256, 2, 0.3)}


# format 1's Seq2Seq held the decoder's pieces and the output layer itself
_SEQ2SEQ_KEYS = (("model.decoder.", "model.decoder.rnn."),
                 ("model.attention.", "model.decoder.attention."),
                 ("model.combine.", "model.decoder.combine."),
                 ("model.cover.", "model.decoder.coverage.proj."),
                 ("model.out.", "model.generator.out."), ("model.gen.", "model.generator.gen."))


def _upgrade_keys(state: dict) -> dict:
    """A format-1 state_dict's keys as format 2's (only Seq2Seq's moved)."""
    if not any(k.startswith("model.tgt_embed.") for k in state):
        return state
    renamed = {}
    for key, value in state.items():
        for old, new in _SEQ2SEQ_KEYS:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def build_model(config: dict, state: dict, path: str | Path) -> nn.Module:
    """The model a checkpoint's ``artifacts["model"]`` describes, with the weights of its
    ``state_dict`` (entries under ``model.``). Refused unless every ``_target_`` in the config
    is one of seqkit's model classes; the config is first built on the meta device and
    checked against the file's weight shapes, so a doctored size allocates nothing."""
    from hydra.utils import get_class

    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model config is a {type(config).__name__}, "
                              f"not a dict")
    foreign = sorted(t for t in _targets(config) if t not in MODELS + PARTS)
    if foreign or config.get("_target_") not in MODELS:
        what = f"names {', '.join(map(repr, foreign))}" if foreign else "names no model"
        raise CheckpointError(f"{path}: refused to build its model: the config {what}; a "
                              f"checkpoint may only name seqkit's models ({', '.join(MODELS)}) "
                              f"and their parts")
    tensors = sum(isinstance(v, torch.Tensor) for v in state.values())
    for key, value in _items(config):
        if key in ("device", "dtype"):  # would build outside the meta device below
            raise CheckpointError(f"{path}: refused to build its model: its config sets "
                                  f"{key}={value!r}; where a model lives is the reader's choice")
        if key == "num_layers" and not (isinstance(value, int) and 0 < value <= tensors):
            raise CheckpointError(f"{path}: refused to build its model: num_layers={value!r} "
                                  f"for a file of {tensors} tensors")
    cls = get_class(config["_target_"])
    kwargs = {k: _part(v, path) for k, v in config.items() if not k.startswith("_")}
    weights = {k.removeprefix("model."): v for k, v in state.items()
               if k.startswith("model.") and isinstance(v, torch.Tensor)}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in _construct(cls, kwargs, path).state_dict().items()}
    differ = sorted(k for k in shapes.keys() | weights.keys()
                    if shapes.get(k) != (tuple(weights[k].shape) if k in weights else None))
    if differ:
        k = differ[0]
        raise CheckpointError(
            f"{path}: its weights do not fit its model config ({len(differ)} differ; {k}: "
            f"{tuple(weights[k].shape) if k in weights else 'missing'} in the file, "
            f"{shapes.get(k, 'none')} for the config)")
    model = _construct(cls, kwargs, path)
    try:
        model.load_state_dict(weights)
    except Exception as e:  # dtypes, or a value the model refuses
        raise CheckpointError(f"{path}: its weights do not load "
                              f"({first_line(e, skip='Error(s) in loading')})") from None
    return model


def _construct(cls, kwargs: dict, path) -> nn.Module:
    try:
        return cls(**kwargs)
    except Exception as e:  # arguments the class does not take
        raise CheckpointError(f"{path}: its model config does not build {cls.__name__}: "
                              f"{first_line(e)}") from None


def _part(config, path):
    """A config value as the model takes it: a ``_target_`` (checked against PARTS before)
    becomes a partial of its class, its own parts made likewise; the model builds them, on
    the meta device first. No Hydra resolution: nothing but these classes is looked up."""
    from hydra.utils import get_class

    if isinstance(config, list):
        return [_part(v, path) for v in config]
    if not isinstance(config, dict):
        return config
    kwargs = {k: _part(v, path) for k, v in config.items() if not k.startswith("_")}
    if "_target_" not in config:
        return kwargs
    if not config.get("_partial_"):
        raise CheckpointError(f"{path}: its model config builds {config['_target_']} itself; "
                              f"a model's parts are partials (_partial_: true)")
    return functools.partial(get_class(config["_target_"]), **kwargs)


def _items(config):
    """Every (key, value) of a nested config."""
    if isinstance(config, dict):
        for key, value in config.items():
            yield key, value
            yield from _items(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from _items(value)


def _targets(config) -> list[str]:
    """Every ``_target_`` in a nested config, as text."""
    return [str(value) for key, value in _items(config) if key == "_target_"]
