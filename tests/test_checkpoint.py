"""Checkpoints from someone else: nothing in the file runs, a foreign class is refused, a
damaged file is one clear line (seqkit.checkpoint)."""
import os
import zipfile

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import seqkit
from seqkit import cli
from seqkit.checkpoint import FORMAT, CheckpointError, read
from seqkit.inference import Classifier
from seqkit.predict import load
from seqkit.train import train
from tests.helpers import ASSETS, tiny_sentiment, train_config


class Exploit:
    """Unpickling this runs ``touch marker``: what a crafted checkpoint does."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_files):
    """A finished tiny sentiment run, and an unfinished copy of its config (no test)."""
    folder = tmp_path_factory.mktemp("run")
    train(train_config(folder, tiny_sentiment(tiny_files, "trainer.max_epochs=1")))
    return folder


def _crafted(tmp_path, marker, real):
    """A copy of a real checkpoint whose pickle also holds the exploit."""
    ckpt = torch.load(real, weights_only=True)
    ckpt["payload"] = Exploit(marker)
    path = tmp_path / "shared.ckpt"
    torch.save(ckpt, path)
    return path


def _one_line_exit(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    message = str(exit_.value.code)
    assert len(message.splitlines()) == 1 and "Traceback" not in capsys.readouterr().err
    return message


def test_the_exploit_runs_when_loaded_unsafely(tmp_path, run):
    """The crafted file is real: torch's full unpickler runs its command."""
    marker = tmp_path / "marker"
    torch.load(_crafted(tmp_path, marker, run / "checkpoints/last.ckpt"), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", [
    ["predict", "{ckpt}", "hello"], ["generate", "{ckpt}", "--out", "{tmp}/s"],
    ["evaluate", "{ckpt}", "--config", "{run}/config.yaml"], ["export", "{ckpt}", "--out",
                                                                "{tmp}/x"],
    ["gates", "{ckpt}", "hello", "--out", "{tmp}/g.png"]])
def test_a_crafted_checkpoint_runs_nothing_in_any_command(command, tmp_path, run, capsys):
    marker = tmp_path / "marker"
    ckpt = _crafted(tmp_path, marker, run / "checkpoints/last.ckpt")
    args = [a.format(ckpt=ckpt, tmp=tmp_path, run=run) for a in command]
    message = _one_line_exit(args, capsys)
    assert "refused to load: it asks to call posix.system" in message and str(ckpt) in message
    assert not marker.exists()


def test_resuming_from_a_crafted_checkpoint_runs_nothing(tmp_path, run, tiny_files):
    marker = tmp_path / "marker"
    ckpt = _crafted(tmp_path, marker, run / "checkpoints/last.ckpt")
    with pytest.raises(CheckpointError, match="refused to load: it asks to call posix.system"):
        train(train_config(tmp_path / "new", tiny_sentiment(tiny_files, f"ckpt_path={ckpt}")))
    # auto_resume finds an unfinished run of the same config whose last.ckpt was replaced
    victim = tmp_path / "runs" / "victim"
    train(train_config(victim, tiny_sentiment(tiny_files, "trainer.max_epochs=1", "test=false")))
    (victim / "checkpoints/last.ckpt").write_bytes(ckpt.read_bytes())
    with pytest.raises(CheckpointError, match="refused to load"):
        train(train_config(tmp_path / "runs" / "next",
                           tiny_sentiment(tiny_files, "auto_resume=true")))
    assert not marker.exists()


FOREIGN = {  # how a doctored model config could try to run a command
    "os.system": lambda model, marker: {"_target_": "os.system", "command": f"touch {marker}"},
    "builtins.eval": lambda model, marker: {
        "_target_": "builtins.eval", "source": f"__import__('os').system('touch {marker}')"},
    "nested": lambda model, marker: {**model, "pooling": {"_target_": "os.system",
                                                          "command": f"touch {marker}"}}}


@pytest.mark.parametrize("how", sorted(FOREIGN))
def test_a_foreign_target_in_the_artifacts_is_refused(how, tmp_path, run, capsys):
    marker = tmp_path / "marker"
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    ckpt["seqkit"]["model"] = FOREIGN[how](ckpt["seqkit"]["model"], marker)
    path = tmp_path / "foreign.ckpt"
    torch.save(ckpt, path)
    for command in (["predict", str(path), "hi"], ["export", str(path), "--out",
                                                    str(tmp_path / "x")]):
        message = _one_line_exit(command, capsys)
        assert "refused to build its model: the config names" in message
        assert ("builtins.eval" if how == "builtins.eval" else "os.system") in message
    assert not marker.exists()


PREDICTOR_OF = {"lm": "TextGenerator", "music": "MusicGenerator", "sentiment": "Classifier",
                "ner": "Tagger", "translation": "Transducer", "summarization": "Transducer"}


@pytest.mark.parametrize("name", ["os.system", "Predictor", ["Classifier"]])
def test_the_checkpoint_names_its_predictor_from_seqkits_own(name, tmp_path, run, capsys):
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["seqkit"]["predictor"] == "Classifier"
    assert type(seqkit.load(run / "checkpoints/last.ckpt")) is Classifier
    ckpt["seqkit"]["predictor"] = name
    path = tmp_path / "forged.ckpt"
    torch.save(ckpt, path)
    message = _one_line_exit(["predict", str(path), "x"], capsys)
    assert f"names a predictor {name!r}" in message and "seqkit has Classifier" in message


def test_a_newer_format_a_foreign_file_and_a_non_checkpoint_are_one_line(tmp_path, run, capsys):
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["seqkit"]["format"] == FORMAT
    ckpt["seqkit"]["format"] = FORMAT + 1
    newer = tmp_path / "newer.ckpt"
    torch.save(ckpt, newer)
    assert f"artifacts of format {FORMAT + 1}" in _one_line_exit(["predict", str(newer), "x"],
                                                                 capsys)
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    assert "is not a seqkit checkpoint" in _one_line_exit(["predict", str(foreign), "x"], capsys)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    assert "not a readable checkpoint" in _one_line_exit(["predict", str(text), "x"], capsys)
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2], listed)
    assert "holds a list, not a dict" in _one_line_exit(["predict", str(listed), "x"], capsys)


def _pickle_span(path) -> tuple[int, int]:
    """Where the checkpoint's pickle (``*/data.pkl``) lies in the file."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name, extra = (int.from_bytes(f.read(2), "little") for _ in range(2))
    start = info.header_offset + 30 + name + extra
    return start, start + info.compress_size


@pytest.fixture(scope="module")
def small(run, tmp_path_factory):
    path = run / "checkpoints" / "last.ckpt"
    return path.read_bytes(), _pickle_span(path), tmp_path_factory.mktemp("damaged")


@given(st.data())
def test_a_truncated_or_flipped_checkpoint_loads_or_says_what_is_wrong(small, data):
    blob, (start, end), folder = small
    damaged = bytearray(blob)
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[:data.draw(st.integers(0, len(blob) - 1), label="length")]
    else:  # flips, half of them in the pickle, where structure and values are
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            lo, hi = (start, end - 1) if data.draw(st.booleans()) else (0, len(blob) - 1)
            at = data.draw(st.integers(lo, hi), label="at")
            damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
    path = folder / "damaged.ckpt"
    path.write_bytes(bytes(damaged))
    try:
        model, artifacts = load(path)
    except CheckpointError as e:  # the only error a damaged file may give
        assert str(path) in str(e) and len(str(e).splitlines()) == 1
    else:
        assert isinstance(model, torch.nn.Module) and isinstance(artifacts, dict)


def test_read_needs_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read(tmp_path / "none.ckpt")


def test_a_doctored_size_is_refused_before_anything_is_allocated(tmp_path, run, monkeypatch):
    from seqkit.models.classifier import SentenceClassifier

    devices = []
    construct = SentenceClassifier.__init__
    monkeypatch.setattr(SentenceClassifier, "__init__", lambda *a, **k: devices.append(
        torch.empty(0).device.type) or construct(*a, **k))
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    # 130 MB of weights, were it built (with 1 << 14 the unprotected load is killed for memory)
    ckpt["seqkit"]["model"]["encoder"]["hidden_size"] = 1 << 11
    path = tmp_path / "doctored.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"its weights do not fit its model config"):
        load(path)
    assert devices == ["meta"]  # built on the meta device only, then refused


@pytest.mark.parametrize("task", ["lm", "music", "sentiment", "ner", "translation",
                                  "summarization"])
@pytest.mark.parametrize("versioned", [False, True])
def test_checkpoints_of_seqkit_0_1_load_and_compute_what_they_computed(task, versioned,
                                                                        tmp_path):
    """Format 1 (seqkit 0.1: models named their cell, and Seq2Seq held its decoder's pieces):
    models that 0.1's code built and saved, with its outputs on fixed inputs, load into
    today's modules; with and without the format number (0.1 wrote it, earlier ones not)."""
    path = ASSETS / "format1" / f"{task}.ckpt"
    saved = torch.load(path, weights_only=True)
    assert "format" not in saved["seqkit"] and "encoder" not in saved["seqkit"]["model"]
    if versioned:
        saved["seqkit"]["format"] = 1
        path = tmp_path / "versioned.ckpt"
        torch.save(saved, path)
    model, artifacts = load(path)
    assert artifacts["format"] == FORMAT and "predictor" not in artifacts
    assert type(seqkit.load(path)).__name__ == PREDICTOR_OF[task]  # named from the task
    with torch.no_grad():
        out = model(*saved["inputs"])
    if task in ("translation", "summarization"):  # the decoder's features -> log P
        out = model.generator(out, saved["inputs"][0], 0)
    elif isinstance(out, tuple):
        out = out[0]
    torch.testing.assert_close(out, saved["expected"], atol=1e-6, rtol=1e-5)


def test_lightning_reads_a_0_1_checkpoint_in_todays_layout_but_does_not_train_it_on(
        tmp_path, tiny_files):
    """``ckpt_path=`` goes through Lightning's checkpoint reader: it gets the upgraded
    weights and config (testing works); continuing the training is refused, naming 0.1."""
    from seqkit.callbacks import AtomicCheckpointIO

    path = ASSETS / "format1" / "translation.ckpt"
    ckpt = AtomicCheckpointIO().load_checkpoint(path)
    assert ckpt["seqkit"]["format"] == FORMAT and "encoder" in ckpt["seqkit"]["model"]
    assert "model.decoder.rnn.weight_ih_l0" in ckpt["state_dict"]
    assert "model.generator.out.weight" in ckpt["state_dict"]
    cfg = train_config(tmp_path, tiny_sentiment(
        tiny_files, f"ckpt_path={ASSETS / 'format1' / 'sentiment.ckpt'}"))
    with pytest.raises(ValueError, match=r"written by seqkit 0\.1 .* cannot continue"):
        train(cfg)


@pytest.mark.parametrize("key, value, message", [
    ("device", "cpu", "sets device='cpu'"), ("dtype", "float64", "sets dtype='float64'"),
    ("num_layers", 1 << 20, "num_layers=1048576 for a file of")])
def test_a_config_that_would_build_off_the_meta_device_is_refused(key, value, message, tmp_path,
                                                                   run):
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    ckpt["seqkit"]["model"]["encoder"][key] = value
    path = tmp_path / "doctored.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"refused to build its model: .*{message}"):
        load(path)
