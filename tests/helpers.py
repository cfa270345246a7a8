"""What test files share: the repository's paths, a composed training config and tiny
overrides for it, small models built as research code builds them, callbacks for fault tests.
The fixtures (tiny data files) are in conftest.py."""
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from seqkit.layers import GRU, LSTM, RNN
from seqkit.models import attention as scorers
from seqkit.models.seq2seq import (CopyGenerator, Coverage, Decoder, Generator,
                                   InputFedDecoder, Seq2Seq)
from seqkit.train import CONFIGS

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED_DATA = ROOT.parent / "shared" / "data"  # the benchmark files beside the checkout
ASSETS = Path(__file__).resolve().parent / "assets"  # files the tests read (not test code)
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                       reason="../shared/data is absent")


# -- configs and commands ---------------------------------------------------------------------
def train_config(output_dir: Path, overrides: list[str]) -> DictConfig:
    """configs/train.yaml with ``overrides``, as ``python train.py`` composes it, writing into
    ``output_dir``."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def tiny_sentiment(files: dict, *more: str) -> list[str]:
    """Overrides for a small, fast sentiment run on the files of the ``tiny_files`` fixture."""
    return ["task=sentiment", "data=sentiment_files", *(f"data.files.{k}={v}" for k, v in
                                                         files.items()),
            "data.batch_size=16", "model.embed_dim=16", "model.encoder.hidden_size=16",
            "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
            *more]


def tiny_translation(corpus: Path, *more: str) -> list[str]:
    """Overrides for a small translation run on the ``parallel_corpus`` fixture's files."""
    return ["task=translation", "data=parallel_files",
            f"data.files.train=[{corpus / 'train.de'},{corpus / 'train.en'}]",
            f"data.files.val={corpus / 'val.tsv'}", f"data.files.test={corpus / 'test.jsonl'}",
            "data.vocab_size=48", "data.batch_size=32", "model.embed_dim=32",
            "model.encoder.hidden_size=16", "model.decoder.rnn.hidden_size=32",
            "model.dropout=0.0",
            "module.optimizer.lr=0.01", "module.test_beam_size=3", "module.num_heatmaps=2",
            "trainer.max_epochs=8", "trainer.log_every_n_steps=5", "logger=csv", *more]


def run_train_py(*args: str, cwd: Path = ROOT, timeout: float = 600,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """``python train.py *args`` in a process of its own."""
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def shared_file(name: str, relpath: str) -> Path:
    """A file of a dataset in the data folder; the test is skipped where it is not there."""
    from seqkit.data.cache import data_root

    path = data_root() / name / relpath
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


def random_roll(T: int = 12, seed: int = 0, density: float = 0.08) -> np.ndarray:
    """A (T, 88) piano roll of 0/1: each key is down at each frame with probability density."""
    rng = np.random.default_rng(seed)
    return (rng.random((T, 88)) < density).astype(np.uint8)


# -- models -----------------------------------------------------------------------------------
LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def layer(kind: str = "lstm", hidden_size: int = 8, **options) -> partial:
    """A model's recurrent layer as its config gives it: a partial of seqkit's layer."""
    return partial(LAYERS[kind], hidden_size=hidden_size, batch_first=True, **options)


def language_model(vocab_size: int = 7, **kw):
    """A small two-layer LSTM language model (seeded), dropout off unless kw says otherwise."""
    from seqkit.models.lm import LanguageModel

    torch.manual_seed(0)
    encoder = layer(kw.pop("cell", "lstm"), 10, num_layers=2, **kw.pop("options", {}))
    return LanguageModel(vocab_size, encoder, **{"embed_dim": 6, "dropout": 0.0, **kw})


def attention_class(kind: str | None):
    """The attention class of a config's name for it ("dot", "general", "additive"), or None."""
    return kind and getattr(scorers, f"{kind.capitalize()}Attention")


def seq2seq(src_vocab_size: int, tgt_vocab_size: int, embed_dim: int = 8,
            hidden_size: int = 10, cell: str = "lstm", attention: str = "general",
            input_feed: bool = True, coverage: bool = False, copy: bool = False,
            num_layers: int = 1, dropout: float = 0.3, options: dict | None = None,
            **kwargs) -> Seq2Seq:
    """The shipped Seq2Seq's shape: a BiRNN of hidden_size / 2 per direction, a decoder of
    hidden_size."""
    options = {"num_layers": num_layers, "dropout": dropout, **(options or {})}
    decoder = partial(InputFedDecoder if input_feed else Decoder,
                      rnn=layer(cell, hidden_size, **options),
                      attention=attention_class(attention),
                      coverage=Coverage if coverage else None)
    return Seq2Seq(src_vocab_size, tgt_vocab_size,
                   encoder=layer(cell, hidden_size // 2, bidirectional=True, **options),
                   decoder=decoder, generator=CopyGenerator if copy else Generator,
                   embed_dim=embed_dim, dropout=dropout, **kwargs)


# -- callbacks for fault tests (configs name them: +callbacks.pace._target_=tests.helpers.Pace)
class Pace(pl.Callback):
    """A run that takes a while: a pause after each training batch (to kill it mid-epoch)."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        time.sleep(self.seconds)


class Poison(pl.Callback):
    """Puts a NaN into the weights at the start of epoch ``epoch`` (a fault to survive)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            list(pl_module.parameters())[-1].data.fill_(float("nan"))  # the output bias
