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
