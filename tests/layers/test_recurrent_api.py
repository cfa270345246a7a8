"""What a researcher meets first using the layers: switching a built layer's backend, the
modules by name, clear errors for bad lengths, torch's key names in load reports,
``all_weights``, one recurrent-dropout mask per sequence in a loop of one's own."""
import importlib

import pytest
import torch
from torch import nn

import seqkit.nn as snn
from seqkit.layers import LSTM


def test_a_built_layer_switches_its_backend_in_place():
    layer = LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(3, 6, 4)
    fused, _ = layer(x)
    assert layer.path(x, None) == "fused"  # auto: torch's fused kernel
    layer.backend = "custom"  # as a user would: seqkit's kernels of the cells now run
    out, _ = layer(x)
    assert layer.path(x, None) == "kernel" and "backend='custom'" in repr(layer)
    torch.testing.assert_close(out, fused, rtol=1e-5, atol=1e-6)
    assert layer.to_backend("cudnn") is layer and "backend='cudnn'" in repr(layer)
    assert layer.path(x, None) == "fused"  # the fused kernel again, on the same weights
    torch.testing.assert_close(layer(x)[0], fused)
    with pytest.raises(ValueError, match="backend must be one of"):
        layer.backend = "fast"
    with pytest.raises(ValueError, match=r"backend='cudnn': torch's fused kernels have no "
                                         r"layer_norm=True"):
        LSTM(4, 5, layer_norm=True).to_backend("cudnn")


def test_the_recurrent_module_imports_as_a_module():
    R = importlib.import_module("seqkit.layers.recurrent")
    import seqkit.layers.recurrent as alias

    assert alias is R and hasattr(R, "Recurrent") and callable(R.LSTM)


@pytest.mark.parametrize("lengths, message", [
    ([3, 7, 2], r"lengths must be in \[1, 6\] \(the input's steps\), got 7"),
    ([3, 0, 2], r"lengths must be in \[1, 6\] \(the input's steps\), got 0"),
    ([3, 2], r"lengths must hold one length per sequence \(3\), got shape \(2,\)")])
def test_bad_lengths_are_named(lengths, message):
    with pytest.raises(ValueError, match=message):
        LSTM(4, 5, batch_first=True)(torch.randn(3, 6, 4), lengths=torch.tensor(lengths))


def test_load_reports_use_torchs_key_names():
    layer = snn.LSTM(4, 5, num_layers=2, bidirectional=True, layer_norm=True)
    state = layer.state_dict()
    assert "ln_ih_weight_l0" in state
    del state["ln_ih_weight_l1_reverse"]
    state["weight_ih_l7"] = torch.zeros(1)
    report = layer.load_state_dict(state, strict=False)
    assert report.missing_keys == ["ln_ih_weight_l1_reverse"]
    assert report.unexpected_keys == ["weight_ih_l7"]
    model = nn.Sequential(snn.GRU(4, 5))  # inside a model: under its prefix
    state = model.state_dict()
    del state["0.bias_hh_l0"]
    assert model.load_state_dict(state, strict=False).missing_keys == ["0.bias_hh_l0"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"0.bias_hh_l0\""):
        model.load_state_dict(state)


def test_all_weights_is_torchs():
    ours = snn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3)
    theirs = nn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=3)
    theirs.load_state_dict(ours.state_dict())
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == [
        [tuple(w.shape) for w in ws] for ws in theirs.all_weights]
    assert all(a.data_ptr() == p.data_ptr() for a, p in zip(
        (w for ws in ours.all_weights for w in ws), ours.flat_weights()))


def test_one_recurrent_dropout_mask_per_sequence_in_your_own_loop():
    cell = snn.LSTMCell(4, 5, recurrent_dropout=0.5).train()
    layer = snn.LSTM(4, 5, recurrent_dropout=0.5, backend="custom").train()
    layer.cells[0].load_state_dict(cell.state_dict())
    x = torch.randn(6, 3, 4)
    torch.manual_seed(1)
    expected, _ = layer(x)  # the layer samples one mask for the sequence
    torch.manual_seed(1)
    mask = cell.recurrent_mask(3, x[0])  # the documented loop: sample once, pass each step
    h = c = torch.zeros(3, 5)
    outputs = []
    for x_t in x:
        h, c = cell(x_t, (h, c), mask=mask)
        outputs.append(h)
    torch.testing.assert_close(torch.stack(outputs), expected)
    torch.manual_seed(1)
    h = c = torch.zeros(3, 5)
    fresh = []
    for x_t in x:  # without it, a new mask each step: not the layer's
        h, c = cell(x_t, (h, c))
        fresh.append(h)
    assert not torch.allclose(torch.stack(fresh), expected)
