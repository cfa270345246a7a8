"""The tagger: one batch overfitted with and without a CRF and character encoders; an odd
character LSTM width builds."""
import pytest
import torch

from seqkit.data.ner import NERData
from seqkit.models.tagger import Tagger
from tests.helpers import layer


@pytest.mark.parametrize("crf, chars", [(True, "cnn"), (False, "lstm"), (True, None)])
def test_tagger_overfits_one_batch(conll_files, crf, chars):
    data = NERData(dataset=None, files={k: str(v) for k, v in conll_files.items()})
    data.setup()
    batch = next(iter(data.train_dataloader()))
    model = Tagger(**data.dims(), encoder=layer(hidden_size=16, bidirectional=True),
                   word_dim=16, char_encoder=chars, crf=crf,
                   dropout=0.0, word_dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    mask = torch.arange(batch["words"].size(1)) < batch["lengths"][:, None]
    for _ in range(60):
        scores = model(batch["words"], batch["cases"], batch["chars"], batch["lengths"])
        loss = model.loss(scores, batch["tags"], mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    scores = model(batch["words"], batch["cases"], batch["chars"], batch["lengths"])
    gold = [row[:n].tolist() for row, n in zip(batch["tags"], batch["lengths"].tolist())]
    assert model.decode(scores, mask) == gold


def test_odd_char_lstm_width_builds():
    tagger = Tagger(10, 10, ["O", "S-PER"], layer(bidirectional=True), char_encoder="lstm",
                    char_features=25, word_dim=8)
    scores = tagger(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                    torch.ones(2, 3, 4, dtype=torch.long), torch.tensor([3, 2]))
    assert scores.shape == (2, 3, 2)
