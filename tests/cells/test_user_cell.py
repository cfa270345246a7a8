"""A researcher's own cell, declared here and nowhere in seqkit, trains through config alone:
a config file of their own names it in a partial of ``seqkit.layers.Recurrent``."""
import logging

import pytest
import torch
import torch.nn.functional as F

from seqkit.cells import RecurrentCell
from seqkit.checkpoint import CheckpointError
from seqkit.predict import load
from seqkit.train import train
from tests.helpers import tiny_sentiment, train_config


class MGUCell(RecurrentCell):
    """The minimal gated unit (Zhou et al. 2016), one gate fewer than the GRU:

        f = σ(W_f x + U_f h + b_f),  h̃ = tanh(W_h x + U_h (f ⊙ h) + b_h),  h' = (1 - f) h + f h̃
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias, 2)
        self.reset_parameters()

    def step(self, gx, state, mask, keep, record=None):
        (h,) = state
        x_f, x_h = gx.chunk(2, 1)
        (w_f, w_h), (b_f, b_h) = self.weight_hh.chunk(2), self.bias_hh.chunk(2)
        f = torch.sigmoid(x_f + F.linear(h, w_f, b_f))
        return (torch.lerp(h, torch.tanh(x_h + F.linear(f * h, w_h, b_h)), f),)


def test_a_cell_of_ones_own_trains_from_a_config_of_ones_own(tmp_path, tiny_files,
                                                             caplog):
    configs = tmp_path / "my_configs" / "model" / "encoder"
    configs.mkdir(parents=True)
    (configs / "mgu.yaml").write_text(f"""\
_target_: seqkit.layers.Recurrent
_partial_: true
cell:
  _target_: {__name__}.MGUCell
  _partial_: true
hidden_size: 32
bidirectional: true
batch_first: true
""")
    cfg = train_config(tmp_path / "run", tiny_sentiment(
        tiny_files, "model/encoder=mgu", "trainer.max_epochs=6", "module.optimizer.lr=0.01",
        f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]"))
    assert cfg.model.encoder.cell._target_.endswith("MGUCell")
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    assert "MGUCell has no kernel" in caplog.text  # it runs on its own step loop
    assert metrics["test/acc"] >= 0.9  # the tiny set is separable
    assert "MGUCell" in (tmp_path / "run" / "config.yaml").read_text()
    # a checkpoint builds seqkit's classes only: one naming this file's class is refused
    with pytest.raises(CheckpointError, match=r"refused to build its model.*MGUCell"):
        load(tmp_path / "run" / "checkpoints" / "last.ckpt")
