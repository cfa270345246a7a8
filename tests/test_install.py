"""seqkit as a user installs it: the wheel in a fresh virtual environment outside the checkout
(torch and the other dependencies reused from this one), then `seqkit train` (a run, a
two-job sweep, a config entry of the user's own) and `seqkit predict` from another folder."""
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import seqkit
from tests.helpers import ROOT, tiny_sentiment


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the new environment's bin folder, a working folder outside the checkout)"""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy: the build leaves its build/ folder there
    for name in ("seqkit", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(root / "dist"), str(source)], check=True,
                   capture_output=True)
    wheel = next((root / "dist").glob("seqkit-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin/python", "-c", "import sysconfig; print("
                                "sysconfig.get_paths()['purelib'])"], capture_output=True,
                               text=True, check=True).stdout.strip())
    # the dependencies from this environment; its seqkit (an editable install of the
    # checkout, through a .pth file of its own) stays out: a .pth line adds no .pth files
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([venv / "bin/pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    work = root / "work"
    work.mkdir()
    return venv / "bin", work


def _seqkit(installed, *args):
    bin_, work = installed
    return subprocess.run([bin_ / "seqkit", *map(str, args)], cwd=work, capture_output=True,
                          text=True, timeout=300, env={"PATH": f"{bin_}:/usr/bin:/bin",
                                                        "OMP_NUM_THREADS": "1"})


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    bin_, work = installed  # (the benchmarks and their peers' scripts ship too)
    out = subprocess.run([bin_ / "python", "-c", "import seqkit, seqkit.train as t; "
                          "print(seqkit.__file__); print(t.CONFIGS); print(t.available_tasks())"],
                         cwd=work, capture_output=True, text=True, check=True).stdout.split("\n")
    assert str(ROOT) not in out[0] + out[1] and "site-packages" in out[1]
    assert out[2] == str(["lm", "music", "ner", "sentiment", "summarization", "translation"])
    assert _seqkit(installed, "--version").stdout.strip() == f"seqkit {seqkit.__version__}"
    for which in ("rnn", "translation", "peers", "data"):
        out = _seqkit(installed, "bench", which, "--help")
        assert out.returncode == 0 and f"usage: seqkit bench {which}" in out.stdout, out.stderr
    runs = subprocess.run([bin_ / "python", "-c", "from seqkit.bench.peers import PEER_RUNS; "
                           "print(sorted(p.name for p in PEER_RUNS.glob('*.*')))"], cwd=work,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert runs == str(["flair_ner.py", "onmt_translation.py", "setup.sh"])


def test_seqkit_train_then_predict_from_any_folder(installed, tiny_files):
    _, work = installed
    run = work / "run"
    out = _seqkit(installed, "train", *tiny_sentiment(tiny_files, "trainer.max_epochs=1",
                                                      "callbacks.progress_bar=null", "logger=csv"),
                  f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((run / "results.json").read_text())
    assert "test/acc" in results and (run / "train.log").is_file()
    predicted = _seqkit(installed, "predict", results["checkpoint"], "a great film")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert set(json.loads(predicted.stdout)["probs"]) == {"0", "1"}


def test_a_sweep_and_a_users_own_config_entry(installed, tiny_files):
    _, work = installed
    sweep = work / "sweep"
    out = _seqkit(installed, "train", "-m", *tiny_sentiment(tiny_files, "trainer=debug"),
                  "model/encoder=gru,lstm", "callbacks.progress_bar=null", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = json.loads((sweep / "summary.json").read_text())
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    mine = work / "my_configs" / "data"
    mine.mkdir(parents=True)
    (mine / "my_reviews.yaml").write_text(
        "defaults:\n  - sentiment_files\n\nfiles:\n" +
        "".join(f"  {split}: {path}\n" for split, path in tiny_files.items()))
    run = work / "mine"
    out = _seqkit(installed, "train", "--config-dir", work / "my_configs", "task=sentiment",
                  "data=my_reviews", "trainer=debug", "model.encoder.hidden_size=8",
                  "callbacks.progress_bar=null", f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"train: {tiny_files['train']}" in (run / "config.yaml").read_text()


def test_the_wheel_lists_every_package_of_the_source():
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "seqkit").rglob(
        "__init__.py")}
    assert set(listed) == found | {"seqkit.configs"}
