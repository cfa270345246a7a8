"""seqkit cells against torch.nn's cells, the article's equations, and gradcheck."""
import pytest
import torch
from torch import nn

import seqkit.nn as snn
from seqkit.cells.base import gate_norm

D64 = torch.float64
TWINS = [
    (snn.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    (snn.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    (snn.GRUCell, nn.GRUCell, {}),
    (snn.LSTMCell, nn.LSTMCell, {}),
]


def _grads(module, *tensors):
    return [p.grad.clone() for p in module.parameters()] + [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("ours_cls, ref_cls, kw", TWINS)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch(ours_cls, ref_cls, kw, batched, with_hx, bias):
    ours = ours_cls(5, 7, bias, **kw, dtype=D64)
    ref = ref_cls(5, 7, bias, **kw, dtype=D64)
    ref.load_state_dict(ours.state_dict())
    ours.load_state_dict(ref.state_dict())  # and back
    shape = (3, 5) if batched else (5,)
    x = torch.randn(shape, dtype=D64, requires_grad=True)
    hshape = (3, 7) if batched else (7,)
    hx = None
    if with_hx:
        hx = torch.randn(hshape, dtype=D64)
        hx = (hx, torch.randn(hshape, dtype=D64)) if ours_cls is snn.LSTMCell else hx
    out, out_ref = ours(x, hx), ref(x, hx)
    outs = out if isinstance(out, tuple) else (out,)
    refs = out_ref if isinstance(out_ref, tuple) else (out_ref,)
    for a, b in zip(outs, refs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    sum(o.sin().sum() for o in outs).backward()
    mine = _grads(ours, x)
    x.grad = None
    sum(o.sin().sum() for o in refs).backward()
    for a, b in zip(mine, _grads(ref, x)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


CELL_OPTIONS = [
    (snn.RNNCell, {}),
    (snn.RNNCell, {"nonlinearity": "relu", "layer_norm": True}),
    (snn.RNNCell, {"recurrent_dropout": 0.3, "zoneout": 0.2}),
    (snn.GRUCell, {}),
    (snn.GRUCell, {"reset_after": False}),
    (snn.GRUCell, {"layer_norm": True}),
    (snn.GRUCell, {"reset_after": False, "layer_norm": True, "recurrent_dropout": 0.3,
                   "zoneout": 0.2}),
    (snn.LSTMCell, {}),
    (snn.LSTMCell, {"peephole": True}),
    (snn.LSTMCell, {"coupled": True}),
    (snn.LSTMCell, {"layer_norm": True}),
    (snn.LSTMCell, {"proj_size": 3}),
    (snn.LSTMCell, {"recurrent_dropout": 0.3, "zoneout": 0.2, "zoneout_c": 0.4}),
    (snn.LSTMCell, {"peephole": True, "coupled": True, "layer_norm": True, "proj_size": 3,
                    "recurrent_dropout": 0.3, "zoneout": 0.1, "zoneout_c": 0.2}),
]


@pytest.mark.parametrize("cls, kw", CELL_OPTIONS)
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_cell(cls, kw, training):
    cell = cls(4, 5, **kw, dtype=D64).train(training)
    x = torch.randn(3, 4, dtype=D64, requires_grad=True)
    state = [torch.randn(3, n, dtype=D64, requires_grad=True) for n in cell.state_sizes()]
    params = list(cell.parameters())

    def step(x, *args):  # reseeded so that every call draws the same dropout/zoneout masks
        torch.manual_seed(1)
        hx = tuple(args[:len(state)]) if cell.has_cell_state else args[0]
        return cell(x, hx)

    torch.autograd.gradcheck(step, (x, *state))
    # parameters too: call through torch.func so gradcheck perturbs them
    names = [n for n, _ in cell.named_parameters()]

    def by_params(*ps):
        torch.manual_seed(1)
        out = torch.func.functional_call(cell, dict(zip(names, ps)),
                                         (x.detach(), tuple(s.detach() for s in state)
                                          if cell.has_cell_state else state[0].detach()))
        return out

    torch.autograd.gradcheck(by_params, tuple(p.detach().requires_grad_() for p in params))


def test_coupled_gates_are_one_minus_forget():
    """A coupled cell equals a plain LSTM whose input gate rows are the negated forget rows,
    since σ(-a) = 1 - σ(a)."""
    ours = snn.LSTMCell(4, 5, coupled=True, dtype=D64)
    ref = nn.LSTMCell(4, 5, dtype=D64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            f, g, o = getattr(ours, name).chunk(3)
            getattr(ref, name).copy_(torch.cat([-f, f, g, o]))
    x, h, c = (torch.randn(2, n, dtype=D64) for n in (4, 5, 5))
    for a, b in zip(ours(x, (h, c)), ref(x, (h, c))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_peephole_equations():
    cell = snn.LSTMCell(4, 5, peephole=True, dtype=D64)
    x, h, c = (torch.randn(2, n, dtype=D64) for n in (4, 5, 5))
    a = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    a_i, a_f, a_g, a_o = a.chunk(4, 1)
    p_i, p_f, p_o = cell.weight_ch.chunk(3)
    c_new = torch.sigmoid(a_f + p_f * c) * c + torch.sigmoid(a_i + p_i * c) * torch.tanh(a_g)
    h_new = torch.sigmoid(a_o + p_o * c_new) * torch.tanh(c_new)
    out = cell(x, (h, c))
    torch.testing.assert_close(out[0], h_new, atol=1e-12, rtol=0)
    torch.testing.assert_close(out[1], c_new, atol=1e-12, rtol=0)


def test_gru_article_form():
    """reset_after=False is the article's GRU: c̃ = tanh(W_c [Γr ⋆ c<t-1>; x<t>] + b_c)."""
    cell = snn.GRUCell(4, 5, reset_after=False, dtype=D64)
    x, c = torch.randn(2, 4, dtype=D64), torch.randn(2, 5, dtype=D64)
    W = torch.cat([cell.weight_hh, cell.weight_ih], 1)  # W_. = [W_.a | W_.x], rows r, z, n
    b = cell.bias_ih + cell.bias_hh
    (W_r, W_z, W_c), (b_r, b_z, b_c) = W.chunk(3), b.chunk(3)
    gamma_r = torch.sigmoid(torch.cat([c, x], 1) @ W_r.T + b_r)
    gamma_u = 1 - torch.sigmoid(torch.cat([c, x], 1) @ W_z.T + b_z)  # torch's z = 1 - Γu
    c_tilde = torch.tanh(torch.cat([gamma_r * c, x], 1) @ W_c.T + b_c)
    expected = gamma_u * c_tilde + (1 - gamma_u) * c
    torch.testing.assert_close(cell(x, c), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", [snn.RNNCell, snn.GRUCell, snn.LSTMCell])
def test_eval_turns_dropout_off_and_zoneout_to_its_expectation(cls):
    plain = cls(4, 5, dtype=D64).eval()
    noisy = cls(4, 5, recurrent_dropout=0.5, zoneout=0.3, dtype=D64).eval()
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, dtype=D64)
    state = tuple(torch.randn(2, 5, dtype=D64) for _ in plain.state_sizes())
    hx = state if plain.has_cell_state else state[0]
    new = plain(x, hx)
    h_plain = new[0] if plain.has_cell_state else new
    h_noisy = noisy(x, hx)[0] if plain.has_cell_state else noisy(x, hx)
    torch.testing.assert_close(h_noisy, 0.7 * h_plain + 0.3 * state[0], atol=1e-12, rtol=0)


def test_zoneout_in_training_keeps_or_updates_each_unit():
    cell = snn.LSTMCell(4, 50, zoneout=0.5, zoneout_c=0.5, dtype=D64).train()
    plain = snn.LSTMCell(4, 50, dtype=D64)
    plain.load_state_dict(cell.state_dict())
    x, h, c = torch.randn(8, 4, dtype=D64), torch.randn(8, 50, dtype=D64), torch.randn(8, 50,
                                                                                      dtype=D64)
    for new, new_plain, old in zip(cell(x, (h, c)), plain(x, (h, c)), (h, c)):
        kept, updated = new == old, new == new_plain
        assert bool((kept | updated).all())
        assert 0.35 < kept.double().mean().item() < 0.65


def test_variational_dropout_one_mask_per_sequence():
    cell, masks = snn.GRUCell(3, 6, recurrent_dropout=0.5).train(), []
    step = cell.step
    cell.step = lambda gx, state, mask, *a: masks.append(mask) or step(gx, state, mask, *a)
    cell.sequence(torch.randn(5 * 4, 3), [4] * 5, (torch.zeros(4, 6),))
    assert len(masks) == 5
    assert all(torch.equal(m, masks[0]) for m in masks)
    assert 0 < (masks[0] == 0).float().mean() < 1  # units are dropped, and scaled by 1/(1-p)
    assert set(masks[0].unique().tolist()) == {0.0, 2.0}


def test_layer_norm_statistics_and_weight_scale_invariance():
    y = gate_norm(torch.randn(6, 4 * 10, dtype=D64) * 5 + 3, torch.ones(40, dtype=D64), None, 4)
    per_gate = y.view(6, 4, 10)
    torch.testing.assert_close(per_gate.mean(-1), torch.zeros(6, 4, dtype=D64), atol=1e-12, rtol=0)
    torch.testing.assert_close(per_gate.var(-1, unbiased=False), torch.ones(6, 4, dtype=D64),  # eps = 1e-5
                               atol=1e-4, rtol=0)
    # Ba et al. 2016: a layer-normalised cell is invariant to re-scaling its weight matrices
    cell = snn.LSTMCell(4, 10, layer_norm=True, dtype=D64)
    x, h, c = torch.randn(2, 4, dtype=D64), torch.randn(2, 10, dtype=D64), torch.randn(2, 10,
                                                                                      dtype=D64)
    before = cell(x, (h, c))
    with torch.no_grad():
        cell.weight_ih.mul_(3.0)
        cell.weight_hh.mul_(0.5)
    for a, b in zip(before, cell(x, (h, c))):  # up to LN's eps = 1e-5 against the variance
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="nonlinearity"):
        snn.RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="zoneout"):
        snn.GRUCell(3, 4, zoneout=1.5)
    with pytest.raises(ValueError, match="proj_size"):
        snn.LSTMCell(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="shape"):
        snn.LSTMCell(3, 4)(torch.randn(2, 2, 2, 3))
