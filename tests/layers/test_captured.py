"""seqkit.layers.captured: which calls a layer captures in CUDA graphs, and that a replayed call
computes what the eager one does. On CPU the capture is a stand-in (the call's module itself,
counted); the real graphs run in the gpu-marked tests."""
import copy
import gc
import logging

import pytest
import torch

import seqkit.nn as snn
from seqkit.layers import captured
from seqkit.layers.captured import AFTER, MOST, Captures


class _Replay(torch.autograd.Function):
    """What make_graphed_callables' replay does with memory: the outputs, and backward the
    inputs' gradients, come back as the same buffers at every call, each call overwriting
    the last's; the work is the function's own call."""

    @staticmethod
    def forward(ctx, fn, buffers: dict, *args):
        with torch.enable_grad():
            inputs = [a.detach().requires_grad_(a.requires_grad) for a in args]
            out, state = fn(*inputs)
        outs = (out, *state)
        ctx.inputs, ctx.outs, ctx.buffers = inputs, outs, buffers
        static = buffers.setdefault("out", [o.detach().clone() for o in outs])
        for b, o in zip(static, outs):
            b.copy_(o.detach())
        return tuple(b.detach() for b in static)

    @staticmethod
    def backward(ctx, *grads):
        need = [i for i in ctx.inputs if i.requires_grad]
        found = torch.autograd.grad(ctx.outs, need, grads, allow_unused=True)
        static = ctx.buffers.setdefault("grad", [torch.zeros_like(i) for i in need])
        for b, g in zip(static, found):
            b.copy_(torch.zeros_like(b) if g is None else g)
        found = iter(static)
        return (None, None, *(next(found).detach() if i.requires_grad else None
                              for i in ctx.inputs))


class FakeCapture:
    """make_graphed_callables' stand-in, counting captures and replays; its replays return
    the same buffers every time, as the real ones do."""

    def __init__(self, fail: bool = False):
        self.fail, self.captured, self.replays, self.samples = fail, 0, 0, []

    def __call__(self, fn, samples):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captured += 1
        self.samples.append(samples)
        buffers = {}

        def replay(*args):
            self.replays += 1
            out, *state = _Replay.apply(fn, buffers, *args)
            return out, tuple(state)
        return replay


def _layer(capture: FakeCapture, **options) -> snn.LSTM:
    torch.manual_seed(0)
    layer = snn.LSTM(4, 6, num_layers=2, layer_norm=True, backend="custom", **options)
    layer.cuda_graphs = True
    layer.__dict__["_captures"] = Captures(capture, device_type="cpu")
    return layer


def _step(layer, x):
    layer.zero_grad(set_to_none=True)
    out, (h, c) = layer(x)
    (out.sum() + h.sum()).backward()
    return out.detach(), [p.grad for p in layer.parameters()]


def test_a_repeated_training_call_is_captured_once_and_then_replayed():
    capture = FakeCapture()
    layer = _layer(capture)
    eager = copy.deepcopy(layer)
    eager.cuda_graphs = False
    x = torch.randn(5, 3, 4)
    for call in range(AFTER + 3):
        out, grads = _step(layer, x)
        expected, expected_grads = _step(eager, x)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        for g, e in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=0)
        assert capture.captured == (call + 1 >= AFTER)
        assert capture.replays == max(0, call + 2 - AFTER)
    sample = capture.samples[0][0]  # the graph's own input buffer, not the caller's tensor
    assert torch.equal(sample, x) and sample.data_ptr() != x.data_ptr()


def test_a_call_before_the_last_ones_backward_runs_eagerly():
    """The graphs' buffers hold the last call's activations until its backward: a second
    call of the same shape (the layer applied twice in a step) must not overwrite them."""
    capture = FakeCapture()
    layer = _layer(capture)
    x = torch.randn(5, 3, 4)
    for _ in range(AFTER):
        _step(layer, x)
    first, _ = layer(x)
    second, _ = layer(x)  # first's backward has not run: eager
    assert capture.replays == 2
    (first.sum() + second.sum()).backward()
    third, states = layer(x)  # after first's backward: replayed
    layer(x)  # third's backward has not run and third lives: eager
    assert capture.replays == 3
    del third, states  # dropped without a backward: the graphs' buffers are free again
    gc.collect()
    layer(x)
    assert capture.replays == 4


def test_replayed_calls_give_their_own_outputs_and_gradients():
    """The graph's buffers are the next replay's: outputs kept from one call stay as they
    were, and gradients accumulated over two calls (no zero_grad between) equal eager's."""
    capture = FakeCapture()
    layer = _layer(capture)
    eager = copy.deepcopy(layer)
    eager.cuda_graphs = False
    xs = [torch.randn(5, 3, 4) for _ in range(AFTER + 2)]
    for x in xs[:AFTER]:
        _step(layer, x)
    kept, expected = [], []
    for model, outs in ((layer, kept), (eager, expected)):
        model.zero_grad(set_to_none=True)
        for x in xs[AFTER:]:  # two calls, gradients accumulated
            out, (h, c) = model(x)
            (out.pow(2).sum() + h.sum()).backward()
            outs.append(out.detach())
    assert capture.replays == 3  # the capturing call's, then these two
    for a, b in zip(kept, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for p, q in zip(layer.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-6)


def test_changing_an_option_changes_the_signature():
    capture = FakeCapture()
    layer = _layer(capture, zoneout=0.1)
    x = torch.randn(5, 3, 4)
    for _ in range(AFTER):
        _step(layer, x)
    assert capture.replays == 1  # the capturing call
    for cell in layer.cells:
        cell.zoneout = 0.2
    _step(layer, x)
    assert capture.replays == 1  # a new signature, seen once: eager


def test_an_older_calls_end_does_not_release_a_newer_calls_hold():
    """A step applying the layer twice, repeated: the next step's first call holds the
    graph while the last step's outputs, rebound, free their node; the second call must
    still run eagerly."""
    capture = FakeCapture()
    layer = _layer(capture)
    x = torch.randn(5, 3, 4)
    for _ in range(AFTER):
        _step(layer, x)
    for step in range(3):
        a, a_states = layer(x)  # replayed; rebinding frees the last step's a and its node
        b, b_states = layer(x)  # a's backward is due: eager
        (a.sum() + b.sum()).backward()
        assert capture.replays == 2 + step


@pytest.mark.parametrize("case", ["eval", "no_grad", "packed", "lengths"])
def test_calls_that_change_from_call_to_call_or_need_no_backward_stay_eager(case):
    capture = FakeCapture()
    layer = _layer(capture)
    x = torch.randn(5, 3, 4)
    for _ in range(AFTER + 1):
        if case == "eval":
            layer.eval()(x)
        elif case == "no_grad":
            with torch.no_grad():
                layer(x)
        elif case == "packed":
            layer(torch.nn.utils.rnn.pack_padded_sequence(x, [5, 4, 2]))
        else:
            layer(x, lengths=torch.tensor([5, 4, 2]))
    assert capture.captured == 0


def test_a_layer_keeps_at_most_MOST_graphs():
    capture = FakeCapture()
    layer = _layer(capture)
    for T in range(1, MOST + 3):
        x = torch.randn(T, 3, 4)
        for _ in range(AFTER):
            _step(layer, x)
    assert capture.captured == MOST


def test_the_count_of_signatures_stays_bounded(monkeypatch):
    monkeypatch.setattr(captured, "SEEN", 3)
    layer = _layer(FakeCapture())
    for T in range(1, 8):  # a new length each call
        layer(torch.randn(T, 3, 4))
        assert len(layer.__dict__["_captures"].seen) <= 3


def test_a_failed_capture_runs_eagerly_and_says_so_once(caplog):
    capture = FakeCapture(fail=True)
    layer = _layer(capture)
    x = torch.randn(5, 3, 4)
    with caplog.at_level(logging.WARNING, logger=captured.__name__):
        for _ in range(AFTER + 3):
            _step(layer, x)
    failures = [r for r in caplog.records if "capturing its call in a CUDA graph failed" in
                r.getMessage()]
    assert len(failures) == 1 and "(5, 3, 4)" in failures[0].getMessage()
    assert "operation not permitted" in failures[0].getMessage()


def test_moving_or_copying_a_layer_leaves_its_graphs_behind():
    capture = FakeCapture()
    layer = _layer(capture)
    x = torch.randn(5, 3, 4)
    for _ in range(AFTER):
        _step(layer, x)
    assert capture.captured == 1
    assert "_captures" not in copy.deepcopy(layer).__dict__
    layer.double()  # new parameter storage: the graphs go
    assert "_captures" not in layer.__dict__


def test_cuda_graphs_are_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("SEQKIT_CUDA_GRAPHS", raising=False)
    assert not captured.enabled_by_default()
    monkeypatch.setenv("SEQKIT_CUDA_GRAPHS", "1")
    assert captured.enabled_by_default()


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"layer_norm": True}])
def test_captured_training_calls_equal_eager_ones_on_gpu(options):
    """On a GPU, with the real graphs: outputs and every gradient of a replayed call equal the
    eager layer's (same weights, same input), over calls past the capture."""
    torch.manual_seed(0)
    layer = snn.LSTM(16, 32, num_layers=2, bidirectional=True, backend="custom",
                     **options).cuda()
    layer.cuda_graphs = True
    eager = copy.deepcopy(layer)
    eager.cuda_graphs = False
    for _ in range(AFTER + 3):
        x = torch.randn(7, 5, 16, device="cuda")
        out, grads = _step(layer, x)
        expected, expected_grads = _step(eager, x)
        torch.testing.assert_close(out, expected)
        for g, e in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(g, e)
    assert len(layer.__dict__["_captures"].graphs) == 1


@pytest.mark.gpu
def test_captured_zoneout_draws_fresh_masks_at_each_replay_on_gpu():
    torch.manual_seed(0)
    layer = snn.LSTM(16, 32, zoneout=0.3, backend="custom").cuda()
    layer.cuda_graphs = True
    x = torch.randn(7, 5, 16, device="cuda")
    outs = [_step(layer, x)[0] for _ in range(AFTER + 3)]
    assert len(layer.__dict__["_captures"].graphs) == 1
    assert not torch.equal(outs[-1], outs[-2])  # replays, each with its own masks
