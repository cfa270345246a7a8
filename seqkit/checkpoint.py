"""Reading checkpoints that may come from someone else: nothing in the file is ever run.

A seqkit checkpoint is Lightning's dict of tensors and plain values, plus ``"seqkit"``: the
artifacts (model config, vocabularies, labels, ...) as dicts, lists, str, int, float, bool,
None, bytes and tensors. It is read with torch's weights-only unpickler, which refuses any
other object (a pickle that would call ``os.system`` names that function and stops), and a
model is built from it only when its config names one of seqkit's own model classes.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .errors import first_line

FORMAT = 1  # the artifacts' layout; a reader refuses a version it does not know
MODELS = ("seqkit.models.classifier.SentenceClassifier", "seqkit.models.tagger.Tagger",
          "seqkit.models.seq2seq.Seq2Seq", "seqkit.models.lm.LanguageModel",
          "seqkit.models.music.PianoRollLM")


class CheckpointError(ValueError):
    """A file that is not a usable seqkit checkpoint; the message names the file and why."""


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
    version = found.get("format", FORMAT)  # checkpoints from before versioning are format 1
    if version != FORMAT:
        raise CheckpointError(f"{path}: artifacts of format {version!r}; this seqkit reads "
                              f"format {FORMAT} (a newer seqkit wrote it?)")
    return found


def build_model(config: dict, state: dict, path: str | Path) -> nn.Module:
    """The model a checkpoint's ``artifacts["model"]`` describes, with the weights of its
    ``state_dict`` (entries under ``model.``). Refused unless every ``_target_`` in the config
    is one of seqkit's model classes; the config is first built on the meta device and
    checked against the file's weight shapes, so a doctored size allocates nothing."""
    from hydra.utils import get_class

    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model config is a {type(config).__name__}, "
                              f"not a dict")
    foreign = sorted(t for t in _targets(config) if t not in MODELS)
    if foreign or "_target_" not in config:
        what = f"names {', '.join(map(repr, foreign))}" if foreign else "names no class"
        raise CheckpointError(f"{path}: refused to build its model: the config {what}; a "
                              f"checkpoint may only name seqkit's models ({', '.join(MODELS)})")
    cls = get_class(config["_target_"])
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}  # no Hydra resolution
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


def _targets(config) -> list[str]:
    """Every ``_target_`` in a nested config, as text."""
    if isinstance(config, dict):
        own = [str(config["_target_"])] if "_target_" in config else []
        return own + [t for v in config.values() for t in _targets(v)]
    if isinstance(config, (list, tuple)):
        return [t for v in config for t in _targets(v)]
    return []
