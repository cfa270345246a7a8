"""seqkit.kernels against the cells' own step loops: every option, float64, and gradcheck."""
import functools
import os
import shutil

import pytest
import torch

import seqkit.layers.recurrent as recurrent
import seqkit.nn as snn
from seqkit import kernels
from seqkit.cells.base import gate_norm
from seqkit import matmul
from seqkit.kernels import native
from seqkit.kernels import bptt
from seqkit.kernels.bptt import tanh

D64 = torch.float64
SIZES = [4, 4, 3, 1]  # packed batch_sizes: four sequences of lengths 4, 3, 3, 2
OPTIONS = {  # every option of each cell alone, and combinations that share a kernel's branches
    "rnn": [{}, {"nonlinearity": "relu"}, {"layer_norm": True}, {"recurrent_dropout": 0.3},
            {"zoneout": 0.3}, {"nonlinearity": "relu", "layer_norm": True, "zoneout": 0.2,
                               "recurrent_dropout": 0.3}],
    "gru": [{}, {"layer_norm": True}, {"recurrent_dropout": 0.3}, {"zoneout": 0.3},
            {"reset_after": False}, {"layer_norm": True, "zoneout": 0.2},
            {"reset_after": False, "layer_norm": True, "recurrent_dropout": 0.3,
             "zoneout": 0.2}],
    "lstm": [{}, {"layer_norm": True}, {"recurrent_dropout": 0.3}, {"zoneout": 0.3},
             {"zoneout_c": 0.3}, {"peephole": True}, {"coupled": True}, {"proj_size": 2},
             {"layer_norm": True, "recurrent_dropout": 0.3}, {"layer_norm": True, "zoneout": 0.2},
             {"peephole": True, "recurrent_dropout": 0.3},
             {"peephole": True, "coupled": True, "layer_norm": True, "proj_size": 2,
              "recurrent_dropout": 0.3, "zoneout": 0.1, "zoneout_c": 0.2}],
}
CELLS = {"rnn": snn.RNNCell, "gru": snn.GRUCell, "lstm": snn.LSTMCell}
LAYERS = {"rnn": snn.RNN, "gru": snn.GRU, "lstm": snn.LSTM}
CASES = [(kind, kw) for kind, options in OPTIONS.items() for kw in options]


def _ids(case):
    kind, kw = case
    return kind + "".join(f"-{k}" + ("" if v is True else f"={v}") for k, v in kw.items())


def _cell(kind, kw, training, bias=True, device="cpu", hidden=5, dtype=D64):
    """A float64 cell whose parameters are away from their initial values (gains not 1)."""
    torch.manual_seed(3)
    cell = CELLS[kind](3, hidden, bias, **kw, dtype=dtype, device=device).train(training)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def _run(fn, cell, x, state, reverse, sizes=SIZES):
    """Outputs, final states and the gradients of a loss on both, for every input."""
    torch.manual_seed(0)  # the same dropout and zoneout draws for every run
    out, final = fn(x, sizes, state, reverse)
    loss = (out * torch.arange(out.numel(), device=out.device).view_as(out).sin()).sum()
    loss = loss + sum((k + 1) * s.sin().sum() for k, s in enumerate(final))
    return [out, *final, *torch.autograd.grad(loss, [x, *state, *cell.parameters()])]


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_equals_the_step_loop(case, reverse, training, bias, device="cpu"):
    """Outputs, final states and the gradients of the input, the initial state and every
    parameter, with the same dropout and zoneout masks, to 1e-10 in float64."""
    cell = _cell(*case, training, bias, device)
    x = torch.randn(sum(SIZES), 3, dtype=D64, device=device, requires_grad=True)
    state = tuple(torch.randn(4, n, dtype=D64, device=device, requires_grad=True)
                  for n in cell.state_sizes())
    fast = _run(functools.partial(kernels.sequence, cell), cell, x, state, reverse)
    slow = _run(cell.sequence, cell, x, state, reverse)
    names = ["output", *(f"final {k}" for k in range(len(state))), "x",
             *(f"initial {k}" for k in range(len(state))), *dict(cell.named_parameters())]
    for a, b, name in zip(fast, slow, names, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_kernel_without_gradients_equals_the_step_loop(case, reverse, training):
    """Inference (no input needs a gradient): the C++ loop reuses one step's buffers, the
    carried c overwritten in place; the same outputs and final states."""
    cell = _cell(*case, training)
    x = torch.randn(sum(SIZES), 3, dtype=D64)
    state = tuple(torch.randn(4, n, dtype=D64) for n in cell.state_sizes())
    with torch.no_grad():
        runs = []
        for fn in (functools.partial(kernels.sequence, cell), cell.sequence):
            torch.manual_seed(0)
            out, final = fn(x, SIZES, state, reverse)
            runs.append([out, *final])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("layout", ["rows", "broadcast rows", "expanded", "transposed"])
def test_lstm_kernel_with_any_layout_of_the_outputs_gradient_equals_the_step_loop(layout):
    """The C++ loop adds the outputs' gradient to dh in its row pass where that gradient's
    rows have unit stride (a row broadcast too: stride 0 between rows), as a tensor op where
    not (out.sum()'s expanded gradient, a transposed one): all as the step loop, in float64."""
    cell = _cell("lstm", {}, True)
    x = torch.randn(sum(SIZES), 3, dtype=D64, requires_grad=True)
    state = tuple(torch.randn(4, 5, dtype=D64, requires_grad=True) for _ in range(2))
    d = {"rows": torch.randn(sum(SIZES), 5, dtype=D64),
         "broadcast rows": torch.randn(5, dtype=D64).expand(sum(SIZES), 5),
         "expanded": torch.ones((), dtype=D64).expand(sum(SIZES), 5),
         "transposed": torch.randn(5, sum(SIZES), dtype=D64).t()}[layout]
    grads = []
    for fn in (functools.partial(kernels.sequence, cell), cell.sequence):
        out, _ = fn(x, SIZES, state, False)
        grads.append(torch.autograd.grad(out, [x, *state, *cell.parameters()], d))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.skipif(not matmul.onednn(), reason="this torch has no oneDNN linear")
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("brgemm", [False, True])
def test_float32_kernel_on_onednn_equals_the_step_loop_in_float64(case, reverse, brgemm,
                                                                  monkeypatch):
    """Float32 runs the per-step products on oneDNN: its linear on prepacked weights (forced
    here for the short test sequence) or, in the LSTM's C++ loop where the build has it, its
    brgemm kernel on the loop's own packing of the weight: the same results as the float64
    step loop to float32 precision."""
    module = native.module()
    if brgemm and not (case[0] == "lstm" and module is not None and module.has_brgemm):
        pytest.skip("brgemm: the LSTM's C++ loop, where the build has it")
    if module is not None:
        monkeypatch.setattr(module, "has_brgemm", brgemm)
    cell = _cell(*case, training=True)
    x = torch.randn(sum(SIZES), 3, dtype=D64, requires_grad=True)
    state = tuple(torch.randn(4, n, dtype=D64, requires_grad=True)
                  for n in cell.state_sizes())
    slow = _run(cell.sequence, cell, x, state, reverse)
    packed = []
    monkeypatch.setattr(matmul, "PACK_MIN_STEPS", 1)
    monkeypatch.setattr(matmul.StepMatmul, "__init__", _spy(matmul.StepMatmul.__init__, packed))
    cell, x32 = cell.float(), x.detach().float().requires_grad_()
    state32 = tuple(s.detach().float().requires_grad_() for s in state)
    fast = _run(functools.partial(kernels.sequence, cell), cell, x32, state32, reverse)
    # every loop's weight, forward and backward, reordered (brgemm: none, the loop packs it)
    assert packed == [] if brgemm else packed and all(packed)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b.float(), atol=1e-4, rtol=1e-3)


def _spy(init, packed: list):
    def spied(self, *args):
        init(self, *args)
        packed.append(self.reordered)
    return spied


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("training", [True, False])
def test_kernel_equals_the_step_loop_on_gpu(case, training):
    test_kernel_equals_the_step_loop(case, True, training, True, device="cuda")


class _Kernel(torch.nn.Module):
    """A cell's kernel as a module, so that torch.func can substitute its parameters."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, state, reverse):
        out, final = kernels.sequence(self.cell, x, SIZES, state, reverse)
        return out, *final


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_kernel(case, reverse):
    module = _Kernel(_cell(*case, training=True))
    x = torch.randn(sum(SIZES), 3, dtype=D64, requires_grad=True)
    state = tuple(torch.randn(4, n, dtype=D64, requires_grad=True)
                  for n in module.cell.state_sizes())
    names = [n for n, _ in module.named_parameters()]

    def run(x, *args):  # reseeded so that every call draws the same masks
        torch.manual_seed(0)
        k = len(args) - len(names)
        return torch.func.functional_call(module, dict(zip(names, args[k:])),
                                          (x, args[:k], reverse))

    params = tuple(p.detach().requires_grad_() for p in module.parameters())
    torch.autograd.gradcheck(run, (x, *state, *params), fast_mode=True)


def _graph_size(layer, steps: int) -> int:
    """How many autograd nodes the layer's output for a (steps, 2, 3) input hangs on."""
    seen, todo = set(), [layer(torch.randn(steps, 2, 3))[0].grad_fn]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += [n for n, _ in node.next_functions if n is not None]
    return len(seen)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_layers_run_every_option_on_a_kernel(case, monkeypatch):
    """A kernel is one autograd node for the whole sequence: the graph of a layer with options
    is as large for 12 steps as for 6, where the cells' step loop adds nodes at every step."""
    kind, kw = case
    layer, x = LAYERS[kind](3, 5, **kw).train(), torch.randn(6, 2, 3)
    assert layer.path(x, None) == ("kernel" if layer.options else "fused")
    if layer.options:
        assert _graph_size(layer, 12) == _graph_size(layer, 6)
        monkeypatch.setattr(recurrent, "has_kernel", lambda cell: False)  # the step loop
        assert _graph_size(layer, 12) > _graph_size(layer, 6)


LAYER_CASES = [("lstm", {"layer_norm": True, "recurrent_dropout": 0.3}),
               ("lstm", {"peephole": True, "zoneout": 0.2, "zoneout_c": 0.1, "proj_size": 3}),
               ("lstm", {"coupled": True}),
               ("gru", {"layer_norm": True, "zoneout": 0.2}),
               ("gru", {"reset_after": False, "recurrent_dropout": 0.3}),
               ("rnn", {"layer_norm": True, "zoneout": 0.2, "nonlinearity": "relu"})]


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids)
@pytest.mark.parametrize("feed", ["padded", "packed", "lengths"])
def test_layer_on_kernels_equals_the_layer_on_step_loops(case, feed, monkeypatch):
    """Two bidirectional layers with dropout between them and a given hx, in training."""
    kind, kw = case
    layer = LAYERS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.3, **kw,
                         backend="custom", dtype=D64)
    lengths = torch.tensor([4, 6, 1, 3])
    x = torch.randn(6, 4, 3, dtype=D64, requires_grad=True)
    hx = tuple(torch.randn(4, 4, n, dtype=D64) for n in layer.cells[0].state_sizes())
    hx = hx if kind == "lstm" else hx[0]
    results = []
    for loops in (False, True):
        if loops:  # the cells' own step loops, as for a cell class without a kernel
            monkeypatch.setattr(recurrent, "has_kernel", lambda cell: False)
        torch.manual_seed(0)
        if feed == "packed":
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, state = layer(packed, hx)
            out = torch.nn.utils.rnn.pad_packed_sequence(out)[0]
        else:
            out, state = layer(x, hx, lengths=lengths if feed == "lengths" else None)
        state = state if isinstance(state, tuple) else (state,)
        loss = out.sin().sum() + sum(s.cos().sum() for s in state)
        results.append([out, *state, *torch.autograd.grad(loss, [x, *layer.parameters()])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-15), (torch.float32, 2.5e-7)])
def test_kernels_tanh_equals_torch(dtype, tol):
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, -0.0, 1e-30])]).to(dtype)
    expected = torch.tanh(x)
    assert (tanh(x) - expected).abs().max() <= tol
    assert tanh(x, x) is x and (x - expected).abs().max() <= tol  # in place


@pytest.mark.skipif(shutil.which("c++") is None or os.environ.get("SEQKIT_NATIVE") == "0",
                    reason="no C++ compiler, or the C++ step switched off")
def test_lstm_gate_math_in_cpp_builds():
    """Where a compiler is, the C++ step builds: a broken build would otherwise only show as a
    slower LSTM."""
    assert native.module() is not None


@pytest.mark.skipif(native.module() is None, reason="the C++ LSTM step is unavailable")
@pytest.mark.parametrize("case", [c for c in CASES if c[0] == "lstm"], ids=_ids)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype, tol", [(D64, 1e-10), (torch.float32, 2e-5)])
def test_lstm_gate_math_in_cpp_equals_the_step_loop_and_torch_ops(case, reverse, dtype, tol,
                                                                   monkeypatch):
    """Hidden size 21 takes the C++ step's vector lanes and its tail (the other tests' 5 only
    its tail); the kernel with its gate math as torch ops, and the cell's step loop, agree."""
    cell = _cell(*case, True, hidden=21, dtype=dtype)
    x = torch.randn(sum(SIZES), 3, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(4, n, dtype=dtype, requires_grad=True) for n in cell.state_sizes())
    in_cpp = _run(functools.partial(kernels.sequence, cell), cell, x, state, reverse)
    monkeypatch.setattr(native, "module", lambda: None)
    torch_ops = _run(functools.partial(kernels.sequence, cell), cell, x, state, reverse)
    loop = _run(cell.sequence, cell, x, state, reverse)
    for a, b, c in zip(in_cpp, torch_ops, loop, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
        torch.testing.assert_close(a, c, atol=tol, rtol=0)


@pytest.fixture
def two_threads():
    """torch on two threads, so that the C++ loops over many rows split them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(native.module() is None, reason="the C++ LSTM step is unavailable")
def test_lstm_in_cpp_with_many_rows_a_step_equals_its_torch_ops(two_threads, monkeypatch):
    """600 sequences: each step's rows are split over two threads in C++."""
    cell = _cell("lstm", {"layer_norm": True, "peephole": True, "zoneout": 0.2,
                          "zoneout_c": 0.1, "recurrent_dropout": 0.3}, True, hidden=21)
    sizes = [600, 600, 450]
    x = torch.randn(sum(sizes), 3, dtype=D64, requires_grad=True)
    state = tuple(torch.randn(600, n, dtype=D64, requires_grad=True) for n in cell.state_sizes())
    in_cpp = _run(functools.partial(kernels.sequence, cell), cell, x, state, False, sizes)
    monkeypatch.setattr(native, "module", lambda: None)
    torch_ops = _run(functools.partial(kernels.sequence, cell), cell, x, state, False, sizes)
    for a, b in zip(in_cpp, torch_ops, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.skipif(native.module() is None, reason="the C++ LSTM step is unavailable")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [37, 2003])
@pytest.mark.parametrize("dtype, tol", [(D64, 1e-10), (torch.float32, 2e-5)])
def test_gate_norm_in_cpp_equals_the_cells_gate_norm(bias, rows, dtype, tol, two_threads):
    """The input half's layer norm in C++ (3 gates of 21: vector lanes and tail), its output
    and the gradients of y, gain and bias, against the cells' torch ops; and gradcheck."""
    y, gain, b, d = (torch.randn(*shape, dtype=dtype) for shape in [(rows, 63), (63,), (63,),
                                                                     (rows, 63)])
    y = y * 3 + 1

    def results(norm, kind):  # the output and the gradients of y, gain and bias, in dtype kind
        leaves = [t.to(kind, copy=True).requires_grad_() for t in (y, gain, b)[:2 + bias]]
        out = norm(*leaves[:2], leaves[2] if bias else None, 3)
        return (out, *torch.autograd.grad(out, leaves, d.to(kind)))

    in_cpp, torch_ops, exact = (results(*r) for r in [(bptt.gate_norm, dtype),
                                                      (gate_norm, dtype), (gate_norm, D64)])
    n = None if dtype == D64 else 2  # float32's sums over the rows (the gain's and bias's):
    for a, c in zip(in_cpp[:n], torch_ops[:n], strict=True):  # below
        torch.testing.assert_close(a, c, atol=tol, rtol=0)
    for a, c, e in zip(in_cpp, torch_ops, exact):  # as close to float64's as torch's (3x)
        a, c = ((t.double() - e).abs().max() for t in (a, c))
        assert a <= 3 * c + 1e-12, (a, c)
    with torch.no_grad():  # in place, the same values
        fresh = y.clone()
        out = bptt.gate_norm(fresh, gain, b if bias else None, 3)
    assert out.data_ptr() == fresh.data_ptr()
    torch.testing.assert_close(out, torch_ops[0], atol=tol, rtol=0)
    if dtype == D64 and rows < 100:
        leaves = [t[:5].clone().requires_grad_() if t.dim() == 2 else t.clone().requires_grad_()
                  for t in (y, gain, b)]
        assert torch.autograd.gradcheck(lambda *t: bptt.gate_norm(*t, 3), leaves)


@pytest.mark.skipif(native.module() is None, reason="the C++ LSTM step is unavailable")
@pytest.mark.parametrize("rows", [301, 5003])  # one block of rows; many, split over threads
def test_column_sums_in_cpp_equal_torch(rows, two_threads):
    a, b = torch.randn(rows, 37, dtype=D64), torch.randn(rows, 37, dtype=D64)
    dot, total = bptt.column_sums(a, b)
    torch.testing.assert_close(dot, (a * b).sum(0), atol=1e-11, rtol=0)
    torch.testing.assert_close(total, a.sum(0), atol=1e-11, rtol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_input_states_of_sequences_of_one_length_take_the_rows_one_step_back(reverse):
    sizes = [3, 3, 3, 3]
    out, h0 = torch.randn(12, 2), torch.randn(3, 2)
    (fast,) = bptt.input_states(sizes, reverse, (out, h0))
    general = torch.cat((out, h0)).index_select(0, bptt._previous_rows(sizes, reverse))
    assert torch.equal(fast, general)
