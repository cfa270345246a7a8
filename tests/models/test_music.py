"""The piano-roll language model: attention over the past only, carried across chunks; a seeded
sample reproduced exactly."""
import numpy as np
import pytest
import torch

from seqkit.models.attention import AdditiveAttention
from seqkit.models.music import PianoRollLM
from tests.helpers import attention_class, layer, random_roll


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_attention_sees_only_the_past_and_carries_it_across_chunks(kind):
    torch.manual_seed(0)
    model = PianoRollLM(layer(hidden_size=12, num_layers=2), embed_dim=8,
                        attention=attention_class(kind)).eval()
    inputs = torch.from_numpy(np.stack([random_roll(), random_roll(seed=1)]).astype(np.float32))
    whole, _ = model(inputs)
    changed = inputs.clone()
    changed[:, 7] = 1 - changed[:, 7]
    after, _ = model(changed)
    assert torch.equal(after[:, :7], whole[:, :7]) and not torch.allclose(after[:, 7:], whole[:, 7:])
    first, state = model(inputs[:, :5])  # the second chunk attends over the first one's outputs
    second, (_, heard) = model(inputs[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    assert heard.shape == (2, 12, 12)
    with pytest.raises(ValueError, match="dot or general"):
        PianoRollLM(layer(hidden_size=12), attention=AdditiveAttention)


@pytest.mark.parametrize("attention", [None, "general"])
def test_a_fixed_seed_reproduces_a_sample_exactly(attention):
    model = PianoRollLM(layer(hidden_size=12, num_layers=2), embed_dim=8,
                        attention=attention_class(attention)).eval()
    primer = torch.from_numpy(random_roll(6).astype(np.float32))
    draw = [model.sample(20, primer, 2, 0.8, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert draw[0].shape == (2, 26, 88) and torch.equal(draw[0][:, :6], primer.expand(2, -1, -1))
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
