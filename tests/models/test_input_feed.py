"""InputFedLSTM's hand-written backward against autograd's numerical gradients."""
import torch

from seqkit import matmul
from seqkit.models.input_feed import InputFedLSTM


def test_fused_input_feeding_gradcheck():
    g = torch.Generator().manual_seed(0)
    B, T, E, H, S, A = 2, 3, 3, 4, 5, 3

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    drop = (torch.rand(B, T, A, generator=g) > 0.3).double() / 0.7
    inputs = (r(B, T, E), r(B, H), r(B, H), r(B, S, 6), r(B, S, H), mask, r(4 * H, E + A),
              r(4 * H, H), r(4 * H), r(4 * H), r(A, 6 + H), drop)
    assert torch.autograd.gradcheck(lambda *x: InputFedLSTM.apply(*x)[0], inputs)


def test_float32_products_on_onednn_equal_float64(monkeypatch):
    """In float32 the loop's four products per step run on oneDNN's prepacked weights where
    this torch has them; outputs and gradients equal the float64 run's (torch.mm) to float32
    precision."""
    g = torch.Generator().manual_seed(0)
    B, T, E, H, S, A, M = 3, 12, 5, 8, 6, 7, 9
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 4:] = False
    inputs = [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in
              ((B, T, E), (B, H), (B, H), (B, S, M), (B, S, H), (4 * H, E + A), (4 * H, H),
               (4 * H,), (4 * H,), (A, M + H))]
    inputs = inputs[:5] + [mask] + inputs[5:] + [None]
    packed = []
    init = matmul.StepMatmul.__init__

    def spied(self, *args):
        init(self, *args)
        packed.append(self.reordered)
    monkeypatch.setattr(matmul.StepMatmul, "__init__", spied)
    results = []
    for dtype in (torch.float64, torch.float32):
        args = [a if a is None or a.dtype == torch.bool else
                a.detach().to(dtype).requires_grad_() for a in inputs]
        out, alphas = InputFedLSTM.apply(*args)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        results.append([out, alphas] + [a.grad for a in args if torch.is_tensor(a) and
                                        a.requires_grad])
    assert packed == [False] * 4 + [matmul.onednn()] * 4  # float64 keeps torch.mm
    for a, b in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(a, b.float(), atol=1e-4, rtol=1e-3)
