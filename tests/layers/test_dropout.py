"""seqkit.layers.Dropout: the expectation kept, about p of the units zeroed, off in eval."""
import torch

from seqkit.layers import Dropout


def test_dropout_keeps_the_expectation_and_zeroes_about_p():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    layer = Dropout(0.3)
    y = layer(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(float(y.mean()) - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)
