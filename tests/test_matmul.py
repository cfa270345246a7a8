"""seqkit.matmul: products on oneDNN equal torch's, and run where they should."""
import pytest
import torch
import torch.nn.functional as F

from seqkit import matmul
from seqkit.kernels import native
from seqkit.layers import Linear

pytestmark = pytest.mark.skipif(not matmul.onednn(), reason="this torch has no oneDNN linear")


def _on_onednn(y) -> bool:
    """Whether y's autograd graph holds seqkit's oneDNN linear."""
    seen, todo = set(), [y.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo += [n for n, _ in node.next_functions]
    return any(type(n).__name__ == "_LinearBackward" for n in seen)


def _pair(rows=(6, 40), inputs=160, outputs=300, bias=True):
    """seqkit's Linear and torch's with the same parameters, and an input for both."""
    torch.manual_seed(0)
    ref = torch.nn.Linear(inputs, outputs, bias)
    ours = Linear(inputs, outputs, bias)
    ours.load_state_dict(ref.state_dict())
    return ours, ref, torch.randn(*rows, inputs)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_torch_forward_and_backward(bias):
    ours, ref, x = _pair(bias=bias)
    assert x.numel() * 300 >= matmul.MIN_PRODUCT
    results = []
    for layer in (ours, ref):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * torch.arange(y.numel()).view_as(y).cos()).sum().backward()
        results.append([y, xi.grad, *(p.grad for p in layer.parameters())])
        layer.zero_grad()
    assert _on_onednn(results[0][0])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_linear_without_gradients_equals_torch():
    ours, ref, x = _pair()
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["float64", "small", "autocast", "traced"])
def test_linear_keeps_torch_products_elsewhere(case):
    """float64, products under MIN_PRODUCT, autocast and tracing call F.linear itself: the
    same numbers, bfloat16 under autocast, and a graph an export can read."""
    ours, ref, x = _pair(rows=(2, 3) if case == "small" else (6, 40))
    if case == "float64":
        ours, ref, x = ours.double(), ref.double(), x.double()
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, expected = ours(x), ref(x)
        assert y.dtype == torch.bfloat16
    elif case == "traced":
        y, expected = torch.jit.trace(ours, x)(x), ref(x)
    else:
        y, expected = ours(x), ref(x)
    assert torch.equal(y, expected)
    assert not _on_onednn(y)


def test_linear_has_torch_state_dict():
    ours, ref, _ = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("transpose", [(False, False), (True, False), (False, True),
                                       (True, True)])
@pytest.mark.parametrize("bias", [True, False])
def test_mm_equals_torch(transpose, bias):
    torch.manual_seed(0)
    a, b = torch.randn(50, 70), torch.randn(70, 30)
    a = a.t().contiguous().t() if transpose[0] else a  # the same values, other strides
    b = b.t().contiguous().t() if transpose[1] else b
    row = torch.randn(30) if bias else None
    expected = a @ b if row is None else a @ b + row
    torch.testing.assert_close(matmul.mm(a, b, row), expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(matmul.mm(a.double(), b.double()), a.double() @ b.double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3200, 256), (37, 21), (1, 5), (16, 16)])
def test_transposed_equals_torch(dtype, shape):
    """The C++ tiled transpose (16 x 16 tiles and their remainders), of a tensor and of a
    view whose rows are strided, as torch's copy of the transposed view."""
    if native.module() is None:
        pytest.skip("the C++ extension is unavailable: transposed is torch's own copy")
    x = torch.randn(*shape, dtype=dtype)
    for t in (x, x[:, : max(1, shape[1] - 3)]):
        out = matmul.transposed(t)
        assert out.is_contiguous() and torch.equal(out, t.t())
    with pytest.raises(RuntimeError, match="dst must be src's shape transposed"):
        native.module().transpose_into(x, x.new_empty(shape[1], shape[0] + 1))


def test_weight_gradients_are_contiguous():
    """mm(d.T, x), a weight gradient, comes back in the parameter's layout (autograd would copy
    a transposed view into it)."""
    d, x = torch.randn(300, 64), torch.randn(300, 32)
    out = matmul.mm(d.t(), x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, d.t() @ x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("steps", [3, 12])
def test_step_matmul_packs_long_loops(steps):
    """Loops of PACK_MIN_STEPS or more reorder the weight once; shorter ones run oneDNN on
    the weight as it is; both equal torch.mm, into ``out`` and onto ``base``."""
    torch.manual_seed(0)
    w, x, base = torch.randn(64, 16), torch.randn(5, 16), torch.randn(5, 64)
    step = matmul.StepMatmul(w, [5] * steps)
    assert step.on_onednn
    assert step.reordered == (steps >= matmul.PACK_MIN_STEPS)
    out = torch.empty(5, 64)
    torch.testing.assert_close(step(x), x @ w.t(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step(x, out, base), base + x @ w.t(), atol=1e-5, rtol=1e-5)
    assert not matmul.StepMatmul(w.double(), [5] * steps).on_onednn
    torch.testing.assert_close(matmul.StepMatmul(w.double(), [5])(x.double()),
                               F.linear(x.double(), w.double()), atol=1e-12, rtol=0)


def test_linear_gives_a_bias_its_gradient_alone():
    """A frozen weight on an input without gradient: the bias still learns."""
    ours, ref, x = _pair()
    for layer in (ours, ref):
        layer.weight.requires_grad_(False)
        layer(x).sum().backward()
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-4)


def test_linear_compiles_in_one_graph():
    ours, ref, x = _pair()
    compiled = torch.compile(ours, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), ref(x), atol=1e-4, rtol=1e-4)


def test_tied_language_model_trains_the_same_on_onednn(monkeypatch):
    """Every product of a language model with tied weights on oneDNN (MIN_PRODUCT 0): loss and
    gradients as with torch's products."""
    from functools import partial

    from seqkit.layers import LSTM
    from seqkit.models.lm import LanguageModel
    monkeypatch.setattr(matmul, "MIN_PRODUCT", 0)
    results = []
    for onednn in (True, False):
        monkeypatch.setattr(matmul, "usable", lambda *t, on=onednn, usable=matmul.usable:
                            on and usable(*t))
        torch.manual_seed(0)
        model = LanguageModel(50, partial(LSTM, hidden_size=24, batch_first=True),
                              embed_dim=16, dropout=0.0, tie_weights=True)
        tokens = torch.randint(50, (3, 10))
        logits, _ = model(tokens)
        assert _on_onednn(logits) == onednn
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, 1).flatten())
        loss.backward()
        results.append([loss, *(p.grad for p in model.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
