"""build(cfg): data, model and task assembled one way; a misspelled argument is an error."""
import pytest
from hydra.errors import InstantiationException

from seqkit.build import build
from seqkit.models.classifier import SentenceClassifier
from seqkit.predict import load
from seqkit.tasks.classification import ClassificationTask
from seqkit.train import train
from tests.helpers import tiny_sentiment, train_config


def test_build_gives_the_data_the_model_it_sized_and_the_task(tmp_path, tiny_files):
    built = build(train_config(tmp_path, tiny_sentiment(tiny_files)))
    assert isinstance(built.model, SentenceClassifier) and isinstance(built.task, ClassificationTask)
    assert built.task.model is built.model
    assert built.model.embed.num_embeddings == built.data.dims()["vocab_size"]
    assert built.model.num_classes == built.data.dims()["num_classes"] == 2
    assert built.task.artifacts["model"]["vocab_size"] == built.model.embed.num_embeddings


@pytest.mark.parametrize("override, name", [("+model.embed_dimm=8", "embed_dimm"),
                                            ("+model.encoder.hiden_size=8", "hiden_size"),
                                            ("+module.monitr=val/acc", "monitr")])
def test_a_misspelled_argument_is_an_error_not_dropped(tmp_path, tiny_files, override, name):
    with pytest.raises(InstantiationException, match=name):
        build(train_config(tmp_path, tiny_sentiment(tiny_files, override)))


def test_a_trained_model_is_evaluated_with_its_own_vocabulary(tmp_path, tiny_files):
    cfg = train_config(tmp_path, tiny_sentiment(tiny_files, "trainer.max_epochs=1", "test=false"))
    train(cfg)
    model, artifacts = load(tmp_path / "checkpoints" / "last.ckpt")
    built = build(cfg, ("test",), model=model, artifacts=artifacts)
    assert built.model is model and built.task.artifacts is artifacts
    assert built.data.vocab.state_dict() == artifacts["vocab"]
