"""seqkit's layers under torch.compile and TorchScript: the same outputs and gradients as eager."""
import pytest
import torch

import seqkit.nn as snn
from seqkit.export import exportable


class Tagger(torch.nn.Module):
    """Embedding, a 2-layer bidirectional LSTM and a linear layer: compiled around the LSTM."""

    def __init__(self, **kw):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 4)
        self.rnn = snn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True, **kw)
        self.out = torch.nn.Linear(12, 3)

    def forward(self, tokens, lengths=None):
        return self.out(self.rnn(self.embed(tokens), lengths=lengths)[0])


def _outputs_and_grads(model, *inputs):
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return [out.detach(), *(p.grad for p in model.parameters())]


@pytest.mark.parametrize("kw", [{"backend": "auto"}, {"backend": "cudnn"},
                                {"backend": "custom"}, {"layer_norm": True}],
                         ids=lambda kw: "-".join(map(str, kw.values())))
def test_compiled_model_equals_eager(kw):
    torch.manual_seed(0)
    model = Tagger(**kw)
    tokens, lengths = torch.randint(0, 20, (3, 5)), torch.tensor([5, 2, 4])
    compiled = torch.compile(model)
    for inputs in ((tokens,), (tokens, lengths)):  # padded, and packed by length
        for eager, fast in zip(_outputs_and_grads(model, *inputs),
                               _outputs_and_grads(compiled, *inputs), strict=True):
            torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-5)


def test_traced_export_equals_eager():
    """TorchScript: tracing ``seqkit.export.exportable`` (the layers on torch's fused kernels),
    since torch.jit.script cannot compile a layer's Python forward."""
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens, lengths = torch.randint(0, 20, (3, 5)), torch.tensor([5, 2, 4])
    traced = torch.jit.trace(exportable(model), (tokens, lengths), check_trace=False)
    other, other_lengths = torch.randint(0, 20, (2, 7)), torch.tensor([3, 7])
    with torch.no_grad():
        for inputs in ((tokens, lengths), (other, other_lengths)):  # lengths stay inputs
            torch.testing.assert_close(traced(*inputs), model(*inputs))


@pytest.mark.parametrize("backend", ["auto", "cudnn", "custom"])
def test_compiled_layer_equals_eager_for_input_without_gradient(backend):
    """An input that needs no gradient (features, not embeddings) is where inductor used to
    break torch's fused CPU kernel; the layer itself, 2 layers, bidirectional."""
    torch.manual_seed(0)
    layer = snn.LSTM(4, 6, num_layers=2, bidirectional=True, backend=backend)
    x = torch.randn(5, 3, 4)

    def run(module):
        layer.zero_grad(set_to_none=True)
        out, (h, c) = module(x)
        (out.sin().sum() + h.sum() + c.cos().sum()).backward()
        return [out.detach(), *(p.grad for p in layer.parameters())]

    for eager, fast in zip(run(layer), run(torch.compile(layer)), strict=True):
        torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-5)

