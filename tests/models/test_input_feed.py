"""InputFedLSTM's hand-written backward against autograd's numerical gradients."""
import torch

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
