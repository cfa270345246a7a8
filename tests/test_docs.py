"""The documentation's commands run and its links hold.

Every line of a bash block in README.md and docs/*.md is one of: a training command (``python
train.py ...``, ``seqkit train ...``), run here in-process as a one-batch variant
(``fast_dev_run``, small layers) on tiny data; another ``seqkit`` command, checked through the
CLI's argument parser (a flag renamed in the code but not in the docs fails); or a command in
NOT_RUN or TOOLS with the reason it is not run. A line that is none of these fails, so the docs
cannot drift from the code unnoticed.

The tiny data: every dataset of the data folder cut to its first lines (in its own format and
layout), music21's chorales replaced by random rolls, and the files the commands name
(``a.tsv``, ``midi/train``, ...) written in the working folder. Nothing is downloaded.
"""
import gzip
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from seqkit.cli import parser
from seqkit.data.cache import data_root
from seqkit.data.music import roll_to_midi
from seqkit.train import available_tasks, train
from tests.helpers import ROOT, random_roll, train_config

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRAIN = (["python", "train.py"], ["seqkit", "train"], ["python", "-m", "seqkit.train"],
         ["python", "-m", "seqkit", "train"])
CLI = (["seqkit"], ["python", "-m", "seqkit"])
# commands that are not run, each with the reason
NOT_RUN = {
    "python train.py task=sentiment trainer=ddp":
        "starts two processes; tests/test_train.py::test_ddp_two_cpu_processes runs it (-m slow)",
    "python train.py task=sentiment trainer=ddp_fork":
        "forks two processes; tests/test_train.py's DDP parity test runs it (-m slow)",
    "python train.py task=sentiment trainer=ddp trainer.accelerator=gpu trainer.devices=4":
        "needs four GPUs",
    "python -m seqkit.train experiment=music_jsb +model.cell_options.zoneout=0.1 "
    "trainer.max_epochs=6 logger=csv callbacks.progress_bar=null":
        "a measured run, shown as seqkit 0.1 said it (docs/performance.md gives 0.2's key)",
}
TOOLS = {  # commands that start so, and why none is run
    "make ": "sets up .venv, then trains for minutes or runs the whole suite",
    "python scripts/bench_": "benchmarks of minutes to hours; tests/bench/ runs them small",
    "SEQKIT_NATIVE=": "the same benchmarks with the LSTM's C++ step off or on",
    "torchrun ": "a multi-node launch", "srun ": "a SLURM launch",
}
# what makes a run tiny (all tasks, then each task), set on the composed config
TINY = {"data.batch_size": 4, "model.encoder.hidden_size": 8, "trainer.fast_dev_run": True}
SEQ2SEQ = {"model.embed_dim": 8, "data.vocab_size": 100,  # the decoder as wide as the encoder's
           "model.decoder.rnn.hidden_size": 16,         # two directions: dot attention needs it
           "module.test_beam_size": 2, "module.num_heatmaps": 0}
TINY_TASK = {
    "sentiment": {"model.embed_dim": 8},
    "ner": {"model.char_dim": 4, "model.char_features": 4},
    "translation": SEQ2SEQ, "summarization": SEQ2SEQ,
    "music": {"model.embed_dim": 8, "module.num_samples": 1, "module.sample_frames": 4},
    "lm": {"model.embed_dim": 8, "data.bptt": 16, "module.sample_length": 8},
}
# lines kept of a dataset's training files and of its other files, (5000, 50) unless named
# here: enough that val and test hold only labels and tags that train has; SciTLDR holds a
# whole paper per line
LINES = {"scitldr": (200, 10)}
LINKED = (".mat", ".zip", ".npz", ".pkl", ".json", ".tar.gz", ".md")  # kept whole
SPLITS = ("train", "val", "test")


def bash_commands(path: Path) -> list[list[str]]:
    """The commands of a file's bash blocks as words, one per line (a line ending in a
    backslash goes on), comments dropped."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", path.read_text(), re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def after(words: list[str], prefixes) -> list[str] | None:
    """The arguments after the first of ``prefixes`` the command starts with, else None."""
    return next((words[len(p):] for p in prefixes if words[:len(p)] == p), None)


def kind(words: list[str]) -> str | None:
    """"not run", "train" or "cli"; None for a command this file does not know."""
    line = shlex.join(words)
    if line in NOT_RUN or line.startswith(tuple(TOOLS)):
        return "not run"
    if after(words, TRAIN) is not None:
        return "train"
    return "cli" if after(words, CLI) is not None else None


COMMANDS = [(path.name, words) for path in DOCS for words in bash_commands(path)]


def params(which: str) -> list:
    """pytest params of the docs' commands of one kind; one that needs a GPU is marked so."""
    return [pytest.param(words, id=f"{name}: {shlex.join(words)}", marks=pytest.mark.gpu if {
                "trainer=gpu", "trainer.accelerator=gpu"} & set(words) else ())
            for name, words in COMMANDS if kind(words) == which]


def test_every_command_is_run_or_excluded():
    unknown = [shlex.join(words) for _, words in COMMANDS if kind(words) is None]
    assert not unknown, f"run them here, or list them in NOT_RUN or TOOLS with why: {unknown}"


def test_every_exclusion_is_still_in_the_docs():
    lines = [shlex.join(words) for _, words in COMMANDS]
    assert set(NOT_RUN) <= set(lines), set(NOT_RUN) - set(lines)
    assert all(any(line.startswith(tool) for line in lines) for tool in TOOLS)


@pytest.mark.parametrize("words", params("cli"))
def test_cli_command_parses(words):
    try:
        parser().parse_args(after(words, CLI))
    except SystemExit as exit:  # --version and --help end with 0, a bad flag with 2
        assert exit.code == 0, shlex.join(words)


# -- training commands ------------------------------------------------------------------------
def tiny_copy(source: Path, dest: Path) -> None:
    """Each dataset under ``source`` into ``dest``, its text files (gzipped or not) cut to
    their first LINES, binary ones linked."""
    for path in (p for p in source.rglob("*") if p.is_file()):
        to = dest / path.relative_to(source)
        to.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(LINKED):
            to.symlink_to(path)
            continue
        train, other = LINES.get(path.relative_to(source).parts[0], (5000, 50))
        zipped = path.suffix == ".gz"
        text = gzip.decompress(path.read_bytes()) if zipped else path.read_bytes()
        text = b"".join(text.splitlines(keepends=True)[:train if "train" in path.name else other])
        to.write_bytes(gzip.compress(text) if zipped else text)


def write_named_files(folder: Path, tiny_files: dict, conll_files: dict, corpus: Path) -> None:
    """The files the docs' commands name, in the formats the docs give: {a,b,c}.tsv
    (sentiment), {a,b,c}.conll and my_vectors.txt (ner), SPLIT.de, .en, .tsv and .jsonl
    (translation; the .jsonl files hold summarization's keys too), midi/SPLIT/ (music),
    my_corpus.txt (lm) and my_configs/ (a config entry of the user's)."""
    for name, split in zip("abc", SPLITS):
        shutil.copy(tiny_files[split], folder / f"{name}.tsv")
        shutil.copy(conll_files[split], folder / f"{name}.conll")
    pairs = list(zip(*((corpus / f"train.{lang}").read_text().splitlines()
                       for lang in ("de", "en"))))
    for split, rows in zip(SPLITS, (pairs, pairs[:24], pairs[24:48])):
        (folder / f"{split}.de").write_text("".join(f"{s}\n" for s, _ in rows))
        (folder / f"{split}.en").write_text("".join(f"{t}\n" for _, t in rows))
        (folder / f"{split}.tsv").write_text("src\ttgt\n" + "".join(f"{s}\t{t}\n" for s, t in rows))
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(
            {"src": s, "tgt": t, "source": f"{s}. {t}.", "summary": t}) + "\n" for s, t in rows))
        for k in range(2):
            roll_to_midi(random_roll(16, seed=k), folder / "midi" / split / f"{k}.mid")
    (folder / "my_corpus.txt").write_text("".join(f"{s}\n{t}\n" for s, t in pairs))
    words = sorted({line.split()[0] for line in (folder / "a.conll").read_text().splitlines()
                    if line})
    (folder / "my_vectors.txt").write_text("".join(f"{w}{' 0.1' * 100}\n" for w in words))
    mine = folder / "my_configs" / "data" / "my_reviews.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("defaults:\n  - sentiment_files\nfiles:\n" + "".join(
        f"  {split}: {folder / name}.tsv\n" for name, split in zip("abc", SPLITS)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_files, conll_files, parallel_corpus):
    """A working folder with the files the commands name, the tiny data folder, no network."""
    source = data_root()
    if not source.is_dir():
        pytest.skip(f"no data folder at {source} (SEQKIT_DATA)")
    root = tmp_path_factory.mktemp("docs")
    tiny_copy(source, root / "data")
    write_named_files(root, tiny_files, conll_files, parallel_corpus)
    glove = root / "data" / "glove" / "glove.6B.100d.txt"  # the catalog's vectors, as cached
    glove.parent.mkdir()
    shutil.copy(root / "my_vectors.txt", glove)

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"a test tried to download {url}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQKIT_DATA", str(root / "data"))
        patch.setenv("SEQKIT_CACHE", str(root / "cache"))
        patch.setattr("seqkit.data.music.bach_chorales", lambda: {  # parsing takes minutes
            split: [random_roll(16, seed) for seed in range(3)] for split in SPLITS})
        patch.setattr("urllib.request.urlopen", no_download)
        patch.chdir(root)
        yield root


@pytest.fixture
def one_thread():
    """Two threads on two busy cores spin in OpenMP and run these tiny batches several times
    slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def jobs(args: list[str]) -> list[list[str]]:
    """Hydra's command line as the overrides of each job: --config-dir becomes a search path,
    -m expands a sweep as Hydra's basic sweeper does."""
    overrides, rest = [], iter(args)
    for arg in rest:
        if arg in ("--config-dir", "-cd"):
            overrides.append(f"hydra.searchpath=[file://{Path(next(rest)).absolute()}]")
        elif arg not in ("-m", "--multirun", "--debug"):
            overrides.append(arg)  # any other flag fails as an override
    if not {"-m", "--multirun"} & set(args):
        return [overrides]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides),
                                        None)[0]


@pytest.mark.parametrize("words", params("train"))
def test_training_command_runs(words, workdir, one_thread, tmp_path):
    """The command (a sweep: its first job; the others compose) as a one-batch run."""
    first, *others = jobs(after(words, TRAIN))
    for k, job in enumerate(others, 1):
        train_config(tmp_path / str(k), job)
    cfg = train_config(tmp_path, first)
    if cfg.task_name is None:  # python train.py alone lists the tasks
        with pytest.raises(ValueError, match="choose a task") as error:
            train(cfg)
        assert all(task in str(error.value) for task in available_tasks())
        return
    for key, value in {**TINY, **TINY_TASK[cfg.task_name]}.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    train(cfg)
    assert (tmp_path / "config.yaml").is_file()


# -- links ------------------------------------------------------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The file's text outside code blocks."""
    return re.sub(r"^ *```.*?^ *```", "", path.read_text(), flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the file's headings."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", prose(path), re.M)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_files_and_headings(path):
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        linked = (path.parent / name).resolve() if name else path
        if not linked.exists() or (anchor and linked.suffix == ".md"
                                   and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken
