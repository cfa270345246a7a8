"""The data folder and the dataset cache: roots from the environment, downloads (file:// URLs,
no network) checked against the catalog's hashes, errors that name files and folder, the real
files' hashes, a read-only data folder.

Counts and hashes come from ../shared/data/MANIFEST.md."""
import hashlib
import io
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from seqkit.data import (DATASETS, ChecksumError, DatasetSpec, Source, data_root, dataset_file,
                         derived_root, load_sentiment, verify)
from tests.helpers import SHARED_DATA, needs_shared_data


def test_roots_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "c"))
    assert data_root() == tmp_path / "d" and not data_root().exists()
    assert derived_root() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.delenv("SEQKIT_DATA")
    assert data_root() == Path.home() / ".cache" / "seqkit" / "data"


def test_unknown_dataset_and_file():
    with pytest.raises(ValueError, match="known: .*mr.*sst2"):
        dataset_file("imdb", "train.tsv")
    with pytest.raises(ValueError, match="no file 'nope.txt'"):
        dataset_file("mr", "nope.txt")


def test_missing_file_without_url(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dataset_file("conll2003", "eng.train", root=tmp_path)
    msg = str(err.value)
    assert "eng.train" in msg and str(tmp_path / "conll2003") in msg and "SEQKIT_DATA" in msg


def test_network_failure_names_files_and_folder(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        dataset_file("mr", "rt-polarity.pos", root=tmp_path)
    msg = str(err.value)
    assert "rt-polarity.pos" in msg and "rt-polarity.neg" in msg and "unreachable" in msg
    assert str(tmp_path / "mr") in msg and "SEQKIT_DATA" in msg
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote(tmp_path: Path) -> dict[str, str]:
    """A plain file, a tar.gz and a zip under tmp_path/remote; returns name -> file:// URL."""
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "plain.txt").write_bytes(b"plain\n")
    with tarfile.open(remote / "pack.tar.gz", "w:gz") as tar:
        for name, data in (("pack/a.txt", b"a\n"), ("pack/b.txt", b"b\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(remote / "pack.zip", "w") as z:
        z.writestr("inner/c.txt", b"c\n")
    return {p.name: p.as_uri() for p in remote.iterdir()}


def _toy(tmp_path: Path, urls: dict[str, str], plain_sha: str = _sha(b"plain\n")) -> DatasetSpec:
    zip_sha = _sha((tmp_path / "remote" / "pack.zip").read_bytes())
    return DatasetSpec(
        {"plain.txt": plain_sha, "a.txt": _sha(b"a\n"), "sub/b.txt": _sha(b"b\n"),
         "pack.zip": zip_sha, "c.txt": _sha(b"c\n")},
        (Source(urls["plain.txt"], saves="plain.txt"),
         Source(urls["pack.tar.gz"], members={"pack/a.txt": "a.txt", "pack/b.txt": "sub/b.txt"}),
         Source(urls["pack.zip"], saves="pack.zip", members={"inner/c.txt": "c.txt"})))


def test_download_from_file_url(monkeypatch, tmp_path):
    monkeypatch.setitem(DATASETS, "toy", _toy(tmp_path, _remote(tmp_path)))
    root = tmp_path / "data"
    assert dataset_file("toy", "plain.txt", root).read_bytes() == b"plain\n"
    assert dataset_file("toy", "sub/b.txt", root).read_bytes() == b"b\n"
    assert (root / "toy" / "a.txt").is_file()  # one download installs all of its members
    assert dataset_file("toy", "c.txt", root).read_bytes() == b"c\n"
    assert verify("toy", root) == dict.fromkeys(DATASETS["toy"].files, True)
    assert not list(root.rglob("*.part"))


def test_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path):
    urls = _remote(tmp_path)
    monkeypatch.setitem(DATASETS, "toy", _toy(tmp_path, urls, plain_sha="0" * 64))
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="plain.txt: digest [0-9a-f]{64} differs"):
        dataset_file("toy", "plain.txt", root)
    bad_member = DatasetSpec({"a.txt": "0" * 64},
                             (Source(urls["pack.tar.gz"], members={"pack/a.txt": "a.txt"}),))
    monkeypatch.setitem(DATASETS, "toy", bad_member)
    with pytest.raises(ValueError, match="pack/a.txt"):
        dataset_file("toy", "a.txt", root)
    assert not [p for p in root.rglob("*") if p.is_file()]


@needs_shared_data
def test_verify_real_files():
    assert verify("mr", SHARED_DATA) == {"rt-polarity.neg": True, "rt-polarity.pos": True}
    for name, spec in DATASETS.items():  # the catalog's hashes are those of ../shared/data
        if name not in ("glove", "fasttext"):  # word vectors: not in ../shared/data
            assert verify(name, SHARED_DATA) == dict.fromkeys(spec.files, True), name


@needs_shared_data
def test_read_only_data_folder(monkeypatch, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mr", data / "mr")
    monkeypatch.setenv("SEQKIT_DATA", str(data))
    monkeypatch.setenv("SEQKIT_CACHE", str(tmp_path / "derived"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download"))
    folders = [data, data / "mr"]
    for p in [*folders, *(data / "mr").iterdir()]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = sorted((str(p), p.stat().st_mtime_ns) for p in data.rglob("*"))
    try:
        splits = load_sentiment("mr")
    finally:
        for p in folders:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert sum(map(len, splits.values())) == 10662
    assert sorted((str(p), p.stat().st_mtime_ns) for p in data.rglob("*")) == before
