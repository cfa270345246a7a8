"""SentimentData: the labels of the training file, and the text as its files tokenize it."""
import pytest
from hydra.utils import instantiate

from tests.helpers import tiny_sentiment, train_config


def test_unknown_label_is_named_with_its_file(tmp_path, tiny_files):
    bad = tmp_path / "val.tsv"
    bad.write_text("text\tlabel\ngood film\t1\nodd film\tneutral\n")
    cfg = train_config(tmp_path, tiny_sentiment({**tiny_files, "val": bad}))
    with pytest.raises(ValueError, match=r"val\.tsv.*'neutral'"):
        instantiate(cfg.data).setup()
