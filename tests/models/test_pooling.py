"""Pooling a padded sequence of encoder states into one vector, inside the classifier."""
import pytest
import torch

from seqkit.models.classifier import SentenceClassifier
from tests.helpers import layer


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_classifier_pools_projected_lstm_states(pooling):
    model = SentenceClassifier(10, 3, layer(bidirectional=True, proj_size=4), embed_dim=8,
                               pooling=pooling)
    assert model(torch.randint(1, 10, (2, 5)), torch.tensor([5, 2])).shape == (2, 3)
