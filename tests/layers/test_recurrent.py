"""seqkit layers against torch.nn's layers with copied weights, over a grid of options."""
import functools
import itertools
import logging
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqkit.nn as snn
from seqkit.layers.recurrent import Recurrent
from tests.helpers import ROOT

D64 = torch.float64
KINDS = {  # name: (seqkit class, torch class, extra constructor arguments)
    "rnn_tanh": (snn.RNN, nn.RNN, {}),
    "rnn_relu": (snn.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "gru": (snn.GRU, nn.GRU, {}),
    "lstm": (snn.LSTM, nn.LSTM, {}),
    "lstm_proj": (snn.LSTM, nn.LSTM, {"proj_size": 3}),
}
T, B, I, H = 6, 4, 5, 7
LENGTHS = torch.tensor([4, 6, 1, 3])


def _pair(kind, backend, dtype=D64, **kw):
    ours_cls, ref_cls, extra = KINDS[kind]
    ours = ours_cls(I, H, **extra, **kw, backend=backend, dtype=dtype)
    ref = ref_cls(I, H, **extra, **kw, dtype=dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _state(kind, layers, bidirectional, dtype):
    LD = layers * (2 if bidirectional else 1)
    out = 3 if kind == "lstm_proj" else H
    h = torch.randn(LD, B, out, dtype=dtype)
    return (h, torch.randn(LD, B, H, dtype=dtype)) if kind.startswith("lstm") else h


def _run(module, x, hx, feed, batch_first):
    """Feed x as padded, packed or padded+lengths; return padded outputs and the states."""
    if feed == "padded":
        out, state = module(x, hx)
    elif feed == "lengths" and isinstance(module, snn.LSTM | snn.GRU | snn.RNN):
        out, state = module(x, hx, lengths=LENGTHS)
    else:
        packed = pack_padded_sequence(x, LENGTHS, batch_first, enforce_sorted=False)
        out, state = module(packed, hx)
        out = pad_packed_sequence(out, batch_first, total_length=T)[0]
    return out, state if isinstance(state, tuple) else (state,)


def _check(kind, backend, layers, bidirectional, batch_first, feed, with_hx, dtype, tol):
    ours, ref = _pair(kind, backend, dtype, num_layers=layers, bidirectional=bidirectional,
                      batch_first=batch_first)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype, requires_grad=True)
    hx = _state(kind, layers, bidirectional, dtype) if with_hx else None
    results = []
    for module in (ours, ref):
        x.grad = None
        out, state = _run(module, x, hx, feed, batch_first)
        loss = out.sin().sum() + sum(s.cos().sum() for s in state)
        loss.backward()
        grads = {n: p.grad for n, p in module.state_dict(keep_vars=True).items()}
        results.append((out, state, x.grad.clone(), grads))
    (o1, s1, gx1, gp1), (o2, s2, gx2, gp2) = results
    torch.testing.assert_close(o1, o2, atol=tol, rtol=0)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=tol, rtol=0)
    assert gp1.keys() == gp2.keys()
    for name in gp1:
        torch.testing.assert_close(gp1[name], gp2[name], atol=tol, rtol=tol, msg=name)


GRID = list(itertools.product(KINDS, ["custom", "cudnn"], [1, 2, 3], [False, True],
                              [False, True], ["padded", "packed", "lengths"], [False, True]))


@pytest.mark.parametrize("kind, backend, layers, bidirectional, batch_first, feed, with_hx",
                         [g for g in GRID if g[2] != 3 or (g[3] and g[5] == "lengths")])
def test_layer_matches_torch_float64(kind, backend, layers, bidirectional, batch_first, feed,
                                     with_hx):
    _check(kind, backend, layers, bidirectional, batch_first, feed, with_hx, D64, 1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["custom", "cudnn"])
@pytest.mark.parametrize("feed", ["padded", "lengths"])
def test_layer_matches_torch_float32(kind, backend, feed):
    _check(kind, backend, 2, True, False, feed, True, torch.float32, 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(kind):
    ours, ref = _pair(kind, "custom", num_layers=2, bidirectional=True)
    x = torch.randn(T, I, dtype=D64)
    (o1, s1), (o2, s2) = ours(x), ref(x)
    torch.testing.assert_close(o1, o2, atol=1e-12, rtol=0)
    torch.testing.assert_close(s1, s2, atol=1e-12, rtol=0)
    assert o1.shape == o2.shape


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_final_states_take_a_gradient_of_any_layout(kind, dtype):
    """Loss weights that are a transposed view hand the kernels a gradient of the final
    states whose rows are strided: the same gradients as with the weights contiguous, on 2
    layers, both ways (the C++ LSTM loop reads those rows; it used to fail its row check)."""
    ours, _ = _pair(kind, "custom", dtype, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    grads = []
    for contiguous in (True, False):
        _, state = ours(x)
        h = state[0] if isinstance(state, tuple) else state
        w = torch.randn(h.size(0), h.size(2), h.size(1), dtype=dtype,
                        generator=torch.Generator().manual_seed(0)).transpose(1, 2)
        w = w.contiguous() if contiguous else w
        grads.append(torch.autograd.grad((h * w).sum(), [x, *ours.parameters()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)


OPTIONS = {
    "rnn_tanh": {"layer_norm": True, "zoneout": 0.1},
    "gru": {"reset_after": False, "layer_norm": True, "zoneout": 0.1},
    "lstm": {"peephole": True, "layer_norm": True, "zoneout": 0.1, "zoneout_c": 0.2},
    "lstm_proj": {"coupled": True, "zoneout": 0.1},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_options", [False, True])
def test_each_sequence_of_a_batch_equals_running_it_alone(kind, with_options):
    ours_cls, _, extra = KINDS[kind]
    options = OPTIONS.get(kind, {}) if with_options else {}
    layer = ours_cls(I, H, 2, **extra, **options, bidirectional=True, backend="custom",
                     dtype=D64).eval()
    x = torch.randn(T, B, I, dtype=D64)
    out, state = layer(x, lengths=LENGTHS)
    state = state if isinstance(state, tuple) else (state,)
    for b, n in enumerate(LENGTHS.tolist()):
        alone, alone_state = layer(x[:n, b:b + 1])
        alone_state = alone_state if isinstance(alone_state, tuple) else (alone_state,)
        torch.testing.assert_close(out[:n, b:b + 1], alone, atol=1e-12, rtol=0)
        assert not out[n:, b].any()  # zero past the end
        for s, a in zip(state, alone_state):
            torch.testing.assert_close(s[:, b:b + 1], a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_loads_both_ways_and_across_backends(kind):
    ours_cls, ref_cls, extra = KINDS[kind]
    ours = ours_cls(I, H, 2, **extra, bidirectional=True, backend="custom")
    ref = ref_cls(I, H, 2, **extra, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    twin = ours_cls(I, H, 2, **extra, bidirectional=True, backend="cudnn")
    twin.load_state_dict(ours.state_dict())
    assert torch.equal(twin.weight_hh_l1_reverse, ref.weight_hh_l1_reverse)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(ours(x)[0], twin(x)[0], atol=1e-5, rtol=0)


def test_option_keys_are_named_like_torch_keys():
    layer = snn.LSTM(I, H, 2, peephole=True, layer_norm=True, bidirectional=True)
    keys = set(layer.state_dict())
    assert {"weight_ch_l1_reverse", "ln_c_weight_l0", "ln_ih_weight_l1"} <= keys
    snn.LSTM(I, H, 2, peephole=True, layer_norm=True, bidirectional=True).load_state_dict(
        layer.state_dict())


def test_inter_layer_dropout_only_in_training():
    layer = snn.LSTM(I, H, 2, dropout=0.5, backend="custom", dtype=D64)
    ref = nn.LSTM(I, H, 2, dropout=0.5, dtype=D64).eval()
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(T, B, I, dtype=D64)
    torch.testing.assert_close(layer.eval()(x)[0], ref(x)[0], atol=1e-12, rtol=0)
    layer.train()
    assert not torch.allclose(layer(x)[0], ref(x)[0])


UNFUSED = {"layer_norm": True, "peephole": True, "coupled": True, "zoneout": 0.1,
           "recurrent_dropout": 0.1}  # options torch's fused kernels do not have


@pytest.fixture(scope="module")
def first_calls_log():
    """What a fresh process logs when it calls an auto layer with each of UNFUSED twice:
    option -> its lines (seqkit says which path runs once per kind of call in a process)."""
    script = f"""
import logging, sys, torch
import seqkit.nn as snn
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
for option, value in {UNFUSED!r}.items():
    print("--", option)
    layer = snn.LSTM({I}, {H}, backend="auto", **{{option: value}})
    for _ in range(2):
        layer(torch.randn({T}, {B}, {I}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(section.split("\n", 1) for section in out.stdout.split("-- ")[1:])


@pytest.mark.parametrize("option", list(UNFUSED))
def test_cudnn_refuses_options_and_auto_says_why(option, first_calls_log):
    value = UNFUSED[option]
    with pytest.raises(ValueError, match=option):
        snn.LSTM(I, H, backend="cudnn", **{option: value})
    layer, x = snn.LSTM(I, H, backend="auto", **{option: value}), torch.randn(T, B, I)
    assert layer.path(x, None) == "kernel"
    assert snn.LSTM(I, H, backend="auto").path(x, None) == "fused"
    said = first_calls_log[option]
    assert said.startswith("seqkit") and option in said and said.count("kernel path") == 1


def test_a_cell_subclass_runs_its_own_step_and_says_so(caplog):
    """A kernel computes the library's cells: a subclass that changes ``step`` must not be
    replaced by it, so it runs its own step loop, with a warning saying what that costs."""
    class Scaled(snn.GRUCell):
        def step(self, gx, state, mask, keep, record=None):
            return tuple(2 * s for s in super().step(gx, state, mask, keep, record))

    layer = Recurrent(functools.partial(Scaled), I, H, 1, True, False, 0.0, False, 0,
                          "custom")
    plain = snn.GRU(I, H, backend="custom")
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(T, B, I)
    with caplog.at_level(logging.INFO, logger="seqkit"):  # the first call of this cell class
        out, _ = layer(x)
    assert layer.path(x, None) == "loop" and "Scaled has no kernel" in caplog.text
    assert not torch.allclose(out, plain(x)[0])


def test_bad_input_gives_clear_errors():
    layer = snn.GRU(I, H, 2)
    with pytest.raises(ValueError, match="input_size=5"):
        layer(torch.randn(T, B, I + 1))
    with pytest.raises(ValueError, match=r"\(2, 4, 7\)"):
        layer(torch.randn(T, B, I), torch.randn(1, B, H))
    with pytest.raises(ValueError, match="backend"):
        snn.LSTM(I, H, backend="fast")


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{"coupled": True}, {"peephole": True},
                                     {"layer_norm": True, "zoneout": 0.1}])
def test_lstm_with_options_moves_to_gpu_and_runs(options):
    """``.cuda()`` flattens the weights for cuDNN only where cuDNN runs the cells: a coupled
    LSTM's have other shapes (its flattening once crashed the move)."""
    layer = snn.LSTM(I, H, 2, bidirectional=True, **options).cuda()
    out, _ = layer(torch.randn(T, B, I, device="cuda"))
    assert out.shape == (T, B, 2 * H) and out.isfinite().all()


@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_cudnn_and_custom_agree_on_gpu(kind, monkeypatch):
    # float32 products on both sides: torch lets cuDNN's RNNs (and may let matmuls) use TF32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ours_cls, _, extra = KINDS[kind]
    custom = ours_cls(I, H, 2, **extra, bidirectional=True, backend="custom").cuda()
    fused = ours_cls(I, H, 2, **extra, bidirectional=True, backend="cudnn").cuda()
    fused.load_state_dict(custom.state_dict())
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    grads = []
    for layer in (custom, fused):
        x.grad = None
        out, _ = layer(x, lengths=LENGTHS)
        out.sin().sum().backward()
        grads.append((out, x.grad.clone(), [p.grad for p in layer.state_dict(keep_vars=True)
                                            .values()]))
    (o1, g1, p1), (o2, g2, p2) = grads
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_auto_trains_packed_cpu_batches_on_the_custom_bptt():
    """torch's packed backward on CPU is O(T²) (a zero-filled (N, 4H) gradient per step)."""
    layer = snn.LSTM(I, H, backend="auto")
    x = torch.randn(T, B, I)
    sizes = torch.tensor([4, 4, 3, 1])
    assert layer.path(x, None) == "fused"
    assert layer.path(x, sizes) == "kernel"
    with torch.no_grad():
        assert layer.path(x, sizes) == "fused"
    assert snn.LSTM(I, H, backend="cudnn").path(x, sizes) == "fused"


def test_recurrent_dropout_trains_custom_and_evaluates_fused():
    """Outside training recurrent dropout is the plain cell, so auto takes the fused kernel."""
    noisy, plain = snn.LSTM(I, H, recurrent_dropout=0.5), snn.LSTM(I, H)
    plain.load_state_dict(noisy.state_dict())
    x = torch.randn(T, B, I)
    assert noisy.path(x, None) == "kernel"
    assert noisy.eval().path(x, None) == "fused"
    torch.testing.assert_close(noisy(x), plain(x))
    assert snn.LSTM(I, H, zoneout=0.1).eval().path(x, None) == "kernel"  # zoneout is not


@pytest.mark.parametrize("kind", KINDS)
def test_custom_backend_runs_under_autocast(kind):
    """Mixed precision (here CPU bfloat16): the recurrence itself runs in float32."""
    ours_cls, _, extra = KINDS[kind]
    layer = ours_cls(I, H, **extra, zoneout=0.1, backend="custom")
    x = torch.randn(T, B, I, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x, lengths=LENGTHS)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


# -- gate inspection -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gate_trace_is_what_the_layer_computed(kind, tmp_path):
    """Each traced gate, recomputed from the cell's weights and the layer's own outputs (a
    fused layer's: the twins share weights), and the states equal to the outputs."""
    from seqkit.layers import GRU, LSTM, RNN, gate_trace
    from seqkit.plots import gate_activations

    kind = {"lstm": LSTM, "gru": GRU}[kind]
    layer = kind(5, 6, num_layers=2, bidirectional=True, backend="auto").double()
    x = torch.randn(9, 5, dtype=D64)
    out, _ = layer(x)
    traces = gate_trace(layer, x)
    assert len(traces) == 4 and layer.path(x, None) == "fused"
    top_fwd, top_bwd = out[:, :6], out[:, 6:]  # the second layer's two directions
    for trace, h in ((traces[2], top_fwd), (traces[3], top_bwd)):
        if kind is LSTM:
            torch.testing.assert_close(trace["output"] * torch.tanh(trace["cell"]), h)
        else:
            torch.testing.assert_close(trace["hidden"], h)
    # the first layer's forward gates from its weights: Γf at t needs a<t-1> (its output)
    below = layer(x)[0]  # unchanged by tracing
    torch.testing.assert_close(below, out)
    first = kind(5, 6, backend="custom").double()
    first.cells[0].load_state_dict(layer.cells[0].state_dict())
    h = first(x)[0]
    prev = torch.cat([torch.zeros(1, 6, dtype=D64), h[:-1]])
    cell = layer.cells[0]
    gates = x @ cell.weight_ih.T + cell.bias_ih + prev @ cell.weight_hh.T + cell.bias_hh
    if kind is LSTM:
        i, f, _, o = gates.sigmoid().chunk(4, 1)
        for name, want in (("update", i), ("forget", f), ("output", o)):
            torch.testing.assert_close(traces[0][name], want)
    else:
        z = gates.chunk(3, 1)[1].sigmoid()
        torch.testing.assert_close(traces[0]["update"], 1 - z)
    path = gate_activations(traces[0], tmp_path / "gates.png", tokens=list("abcdefghi"))
    assert path.stat().st_size > 5000
    with pytest.raises(ValueError, match="no gates"):
        gate_trace(RNN(5, 6), x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_through_the_cell_kernels_equals_torch(kind, bias):
    """A single time step on CPU takes torch's cell kernels (a decoder's step): outputs, states
    and gradients equal torch.nn's, two bidirectional layers, batch-first."""
    ours, ref = _pair(kind, "cudnn", num_layers=2, bidirectional=True, bias=bias,
                      batch_first=True)
    x = torch.randn(B, 1, I, dtype=D64, requires_grad=True)
    hx = _state(kind, 2, True, D64)
    results = []
    for module in (ours, ref):
        x.grad = None
        out, state = module(x, hx)
        states = state if isinstance(state, tuple) else (state,)
        (out.sin().sum() + sum(s.cos().sum() for s in states)).backward()
        results.append((out, *states, x.grad.clone(),
                        *(p.grad for p in module.state_dict(keep_vars=True).values())))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
