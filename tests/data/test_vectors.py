"""Pretrained word vectors by catalog name: fetched through the dataset cache from a mirror the
test makes (a file:// URL, the catalog's entry pointed at it with the mirror's digests),
checked, and a missing or mismatched file is one line naming the folder."""
import hashlib
import urllib.error
import urllib.request
import zipfile

import pytest

from seqkit.data import DATASETS, ChecksumError, DatasetSpec, Source
from seqkit.data.cache import checksum
from seqkit.data.ner import NERData
from seqkit.data.vectors import VECTORS, load_vectors
from seqkit.models.tagger import Tagger
from tests.helpers import layer

GLOVE = b"john 0.5 -1.0 2.0\nparis 1.5 0.25 -3.0\n"


def _mirror(tmp_path, digest) -> DatasetSpec:
    """glove.6B.zip with a tiny 50d member under tmp_path/mirror, as the catalog's entry."""
    (tmp_path / "mirror").mkdir()
    archive = tmp_path / "mirror" / "glove.6B.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("glove.6B.50d.txt", GLOVE)
    real = DATASETS["glove"]
    assert real.files["glove.6B.50d.txt"].startswith("sha1:")  # MXNet's published digest
    return DatasetSpec({"glove.6B.50d.txt": digest},
                       (Source(archive.as_uri(), members={"glove.6B.50d.txt":
                                                          "glove.6B.50d.txt"}),))


def test_a_catalog_name_is_fetched_into_the_data_cache_and_checked(tmp_path, monkeypatch):
    assert VECTORS["glove.6B.100d"] == ("glove", "glove.6B.100d.txt")
    assert all(rel in DATASETS[name].files for name, rel in VECTORS.values())
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "data"))
    sha1 = "sha1:" + hashlib.sha1(GLOVE).hexdigest()
    monkeypatch.setitem(DATASETS, "glove", _mirror(tmp_path, sha1))
    vectors = load_vectors("glove.6B.50d")
    assert vectors["paris"].tolist() == [1.5, 0.25, -3.0]
    installed = tmp_path / "data" / "glove" / "glove.6B.50d.txt"
    assert installed.read_bytes() == GLOVE and checksum(installed, sha1) == sha1
    (tmp_path / "mirror" / "glove.6B.zip").unlink()  # the second time reads the cache
    assert load_vectors("glove.6B.50d").keys() == vectors.keys()


def test_a_mismatched_download_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(DATASETS, "glove", _mirror(tmp_path, "sha1:" + "0" * 40))
    with pytest.raises(ChecksumError, match=r"glove.6B.50d.txt: digest sha1:\w+ differs"):
        load_vectors("glove.6B.50d")
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_without_the_network_the_error_names_the_folder(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as err:
        load_vectors("glove.6B.100d")
    message = str(err.value)
    assert "glove.6B.100d.txt" in message and str(tmp_path / "data" / "glove") in message
    assert "nlp.stanford.edu/data/glove.6B.zip" in message
    with pytest.raises(FileNotFoundError, match="give a word2vec or GloVe text file, or one "
                                                "of glove.6B.50d, glove.6B.100d"):
        load_vectors(tmp_path / "glove.6B.100d.txt")


def test_ner_data_takes_a_catalog_name(tmp_path, monkeypatch, conll_files):
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(DATASETS, "glove", _mirror(tmp_path, hashlib.sha256(GLOVE).hexdigest()))
    data = NERData(dataset=None, files={k: str(v) for k, v in conll_files.items()},
                   vectors="glove.6B.50d")
    data.setup()
    model = Tagger(**data.dims(), encoder=layer(bidirectional=True), word_dim=3)
    data.init_model(model)
    assert model.words.weight[data.features.words["john"]].tolist() == [0.5, -1.0, 2.0]
