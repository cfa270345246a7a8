"""Attention scorers: weights over the memory that leave its padding out."""
import pytest
import torch

from seqkit.models.attention import AdditiveAttention, DotAttention, GeneralAttention, attend


@pytest.mark.parametrize("kind", [DotAttention, GeneralAttention, AdditiveAttention])
def test_attention_ignores_padding(kind):
    scorer = kind(6, 6)
    memory = torch.randn(3, 5, 6)
    mask = torch.arange(5) < torch.tensor([5, 2, 4])[:, None]
    context, weights = attend(scorer.scores(torch.randn(3, 4, 6), scorer.keys(memory)), mask,
                              memory)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 6)
    assert (weights.masked_select(~mask[:, None, :]) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    with pytest.raises(ValueError, match="query_size == memory_size"):
        DotAttention(6, 8)
