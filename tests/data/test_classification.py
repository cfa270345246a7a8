"""SentimentData: the labels of the training file, and the text as its files tokenize it."""
import pytest
from hydra.utils import instantiate

from tests.helpers import needs_shared_data, tiny_sentiment, train_config


def test_unknown_label_is_named_with_its_file(tmp_path, tiny_files):
    bad = tmp_path / "val.tsv"
    bad.write_text("text\tlabel\ngood film\t1\nodd film\tneutral\n")
    cfg = train_config(tmp_path, tiny_sentiment({**tiny_files, "val": bad}))
    with pytest.raises(ValueError, match=r"val\.tsv.*'neutral'"):
        instantiate(cfg.data).setup()


@needs_shared_data
def test_a_pre_tokenized_dataset_is_read_as_it_is_and_predict_splits_typed_text():
    from seqkit.data.classification import SentimentData

    data = SentimentData(dataset="sst2")
    data.setup("fit")
    assert "4/5ths" in data.vocab  # the file's token, which the simple tokenizer would split
    assert data.artifacts()["tokenizer"] == "simple"  # what typed text gets in predict


def test_a_sentencepiece_model_tokenizes_training_and_predict_alike(tmp_path, tiny_files):
    """data.tokenizer=<a sentencepiece .model file>: the vocabulary is its pieces, the
    checkpoint keeps the model's bytes, and predict splits typed text with it."""
    import json

    import torch

    from seqkit.data.classification import SentimentData
    from seqkit.data.subword import train_sentencepiece
    from seqkit.data.text import read_user_sentiment
    from seqkit.models.classifier import SentenceClassifier
    from seqkit.predict import classify
    from tests.helpers import layer

    texts = [" ".join(e.tokens) for e in read_user_sentiment(tiny_files["train"])]
    model = tmp_path / "pieces.model"
    model.write_bytes(train_sentencepiece(texts, vocab_size=30, model_type="unigram"))
    data = SentimentData(dataset=None, files={k: str(v) for k, v in tiny_files.items()},
                         tokenizer=str(model))
    data.setup("fit")
    artifacts = data.artifacts()
    assert artifacts["tokenizer"] == "sentencepiece"
    assert artifacts["sentencepiece"] == model.read_bytes()
    assert any(p.startswith("▁") for p in data.vocab.itos)  # pieces, not words
    restored = SentimentData(dataset=None, files={k: str(v) for k, v in tiny_files.items()})
    restored.restore(artifacts)
    restored.setup("test")
    assert restored.splits["test"] == data.split("test")  # encoded as at training time
    net = SentenceClassifier(**data.dims(), encoder=layer(bidirectional=True), embed_dim=8)
    rows = classify(net.eval(), {**artifacts, "model": {}}, ["The film is GREAT!", ""])
    assert rows[0]["label"] in ("0", "1") and rows[1]["label"] is None
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        SentimentData(dataset=None, files={k: str(v) for k, v in tiny_files.items()},
                      tokenizer=str(tiny_files["train"]))
    with pytest.raises(ValueError, match="or give a sentencepiece .model file"):
        SentimentData(dataset=None, files={k: str(v) for k, v in tiny_files.items()},
                      tokenizer="spaces")
    json.dumps(artifacts, default=lambda b: "bytes")  # (export writes bytes as base64)
    torch.save(artifacts, tmp_path / "a.pt")
    assert torch.load(tmp_path / "a.pt", weights_only=True) == artifacts  # a checkpoint's
