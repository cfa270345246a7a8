"""Polyphonic music as binary piano rolls: (T, 88) frames, column j = MIDI pitch 21 + j.

Sources: the four Boulanger-Lewandowski et al. (2012) benchmarks as ``.mat`` rolls (JSB
Chorales, Nottingham, MuseData, Piano-midi.de; official splits), music21's bundled Bach
chorales (no download: parsed once to quarter-note rolls and cached), and the user's MIDI
files or numpy piano rolls. MIDI is read and written with pretty_midi.
"""
from __future__ import annotations

import hashlib
import logging
import math
import random
from pathlib import Path

import numpy as np
import torch

from .cache import dataset_file, derived_root, replace_atomically
from .module import SplitDataModule

log = logging.getLogger(__name__)

LOWEST, NUM_NOTES = 21, 88  # A0 .. C8
BENCHMARKS = {"jsb_chorales": "JSB_Chorales.mat", "nottingham": "Nottingham.mat",
              "musedata": "MuseData.mat", "piano_midi": "Piano_midi.mat"}
SPLITS = {"train": "traindata", "val": "validdata", "test": "testdata"}


def grid(time: float) -> int:
    """The frame a time (in frames) falls on: halves round up, alike everywhere (Python's
    round() would send 0.5 down and 1.5 up)."""
    return math.floor(time + 0.5)


def load_benchmark(name: str, root: Path | None = None) -> dict[str, list[np.ndarray]]:
    """One of the four benchmarks: {"train", "val", "test"} -> lists of (T, 88) uint8 rolls."""
    from scipy.io import loadmat

    if name not in BENCHMARKS:
        raise ValueError(f"unknown music dataset {name!r}; known: {sorted(BENCHMARKS)}, "
                         "bach_chorales (music21)")
    path = dataset_file(name, BENCHMARKS[name], root)
    mat = loadmat(str(path))
    out = {}
    for split, key in SPLITS.items():
        rolls = [np.asarray(r, dtype=np.uint8) for r in mat[key][0]]
        for i, roll in enumerate(rolls):
            if roll.ndim != 2 or roll.shape[1] != NUM_NOTES:
                raise ValueError(f"{path}: {key}[{i}] has shape {roll.shape}, expected (T, 88)")
        out[split] = rolls
    return out


def _score_roll(score, frames_per_quarter: int, semitones: int = 0) -> np.ndarray:
    """A music21 score -> (T, 88) roll, every note sounding from its onset frame to its end,
    moved by ``semitones``."""
    length = int(np.ceil(float(score.highestTime) * frames_per_quarter))
    roll = np.zeros((max(length, 1), NUM_NOTES), np.uint8)
    for element in score.flatten().notes:
        start = grid(float(element.offset) * frames_per_quarter)
        end = grid(float(element.offset + element.quarterLength) * frames_per_quarter)
        for pitch in element.pitches:
            if LOWEST <= pitch.midi + semitones < LOWEST + NUM_NOTES:
                roll[start:max(end, start + 1), pitch.midi + semitones - LOWEST] = 1
    return roll


def to_c(score) -> int:
    """Semitones (-6..5) that move the score's key, as music21 analyses it, to C major or C
    minor: Boulanger-Lewandowski et al. prepared their benchmarks' pieces the same way."""
    shift = -score.analyze("key").tonic.pitchClass
    return shift + 12 if shift < -6 else shift


def bach_chorales(frames_per_quarter: int = 1, seed: int = 0,
                  fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, list[np.ndarray]]:
    """music21's Bach chorales (its corpus, shipped inside the package) as rolls in C major or
    C minor, split train/val/test by a seeded shuffle; parsed once, then read from the
    derived cache."""
    from music21 import corpus

    paths = sorted(p for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml"))
    key = hashlib.sha256(repr((3, frames_per_quarter, [p.name for p in paths])).encode())
    cache = derived_root() / "music" / f"bach_{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            rolls = [stored[f"r{i}"] for i in range(len(stored.files))]
    else:
        from tqdm import tqdm

        rolls = []
        for path in tqdm(paths, desc="parsing music21's Bach chorales (once)", unit="piece"):
            try:
                score = corpus.parse(path)
            except Exception as e:  # music21 raises many types for a bad score
                raise ValueError(f"{path}: music21 cannot parse it ({e})") from None
            roll = _score_roll(score, frames_per_quarter, to_c(score))
            if roll.any():
                rolls.append(roll)
        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
                np.savez_compressed(f, **{f"r{i}": r for i, r in enumerate(rolls)})

        replace_atomically(cache, save)
    order = list(range(len(rolls)))
    random.Random(seed).shuffle(order)
    a, b = (int(f * len(order)) for f in (fractions[0], fractions[0] + fractions[1]))
    return {"train": [rolls[i] for i in order[:a]], "val": [rolls[i] for i in order[a:b]],
            "test": [rolls[i] for i in order[b:]]}


def midi_to_roll(path: str | Path, fs: float = 4.0) -> np.ndarray:
    """A MIDI file -> (T, 88) roll at ``fs`` frames per second (drums left out); a note sounds
    from frame start * fs to frame end * fs (halves rounding up), at least one frame."""
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as e:  # mido/pretty_midi raise many types for a bad file
        raise ValueError(f"{path}: not a readable MIDI file ({type(e).__name__}: {e})") from None
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes
             if LOWEST <= n.pitch < LOWEST + NUM_NOTES]
    if not notes:
        raise ValueError(f"{path}: no notes in the piano range (MIDI 21-108)")
    spans = [(n.pitch - LOWEST, grid(n.start * fs), grid(n.end * fs)) for n in notes]
    spans = [(key, start, max(end, start + 1)) for key, start, end in spans]
    roll = np.zeros((max(end for _, _, end in spans), NUM_NOTES), np.uint8)
    for key, start, end in spans:
        roll[start:end, key] = 1
    return roll


def roll_to_midi(roll, path: str | Path, fs: float = 4.0, program: int = 0,
                 velocity: int = 80) -> Path:
    """Write a (T, 88) roll as a one-track MIDI file: each run of consecutive active frames of
    a pitch is one note. Written to a temporary name, then renamed."""
    import pretty_midi

    roll = np.asarray(roll, dtype=bool)
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    padded = np.pad(roll, ((1, 1), (0, 0))).astype(np.int8)
    changes = np.diff(padded, axis=0)  # +1 at an onset frame, -1 at the frame after the end
    for key in range(roll.shape[1]):
        onsets, ends = np.flatnonzero(changes[:, key] == 1), np.flatnonzero(changes[:, key] == -1)
        for start, end in zip(onsets, ends):
            instrument.notes.append(pretty_midi.Note(velocity, LOWEST + key, start / fs,
                                                     end / fs))
    midi.instruments.append(instrument)
    return replace_atomically(Path(path), lambda tmp: midi.write(tmp))


def midi_to_wav(midi_path: str | Path, wav_path: str | Path | None = None,
                sample_rate: int = 22050) -> Path:
    """Render a MIDI file to 16-bit mono WAV (default: beside it) lasting as long as the
    music, to its last note's end. FluidSynth plays it with pretty_midi's bundled General MIDI
    soundfont where pyfluidsynth and the FluidSynth library are installed (the ``audio``
    extra); otherwise pretty_midi's additive sine synthesis renders it."""
    import pretty_midi
    from scipy.io import wavfile

    midi_path = Path(midi_path)
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    try:
        audio = midi.fluidsynth(fs=sample_rate)
    except (ImportError, OSError):  # no pyfluidsynth, or no FluidSynth library under it
        audio = midi.synthesize(fs=sample_rate)
    audio = audio[:round(midi.get_end_time() * sample_rate)]  # both add a release tail
    peak = np.abs(audio).max() if audio.size else 0.0
    pcm = (audio / peak * 0.9 * 32767 if peak > 0 else audio).astype(np.int16)
    wav_path = Path(wav_path) if wav_path else midi_path.with_suffix(".wav")
    return replace_atomically(wav_path, lambda tmp: wavfile.write(tmp, sample_rate, pcm))


ROLL_FILES = (".mid", ".midi", ".npy", ".npz")


def read_rolls(path: str | Path, fs: float = 4.0) -> list[np.ndarray]:
    """The pieces in one file: a MIDI file, a .npy roll (T, 88) or a .npz of such rolls."""
    path = Path(path)
    if path.suffix.lower() in (".mid", ".midi"):
        return [midi_to_roll(path, fs)]
    if path.suffix.lower() not in (".npy", ".npz"):
        raise ValueError(f"{path}: not a music file seqkit reads ({', '.join(ROLL_FILES)})")
    try:
        loaded = np.load(path)
        rolls = [loaded[k] for k in loaded.files] if path.suffix.lower() == ".npz" else [loaded]
    except Exception as e:
        raise ValueError(f"{path}: not a readable numpy file ({e})") from None
    for i, roll in enumerate(rolls):
        if roll.ndim != 2 or roll.shape[1] != NUM_NOTES or not np.isin(roll, (0, 1)).all():
            raise ValueError(f"{path}: piece {i} is not a binary (T, 88) piano roll "
                             f"(shape {roll.shape}, values {np.unique(roll)[:5]})")
    return [r.astype(np.uint8) for r in rolls]


def read_music(spec, split: str, fs: float = 4.0) -> list[np.ndarray]:
    """The pieces of one split: a folder of music files (MIDI, .npy, .npz) or a list of
    files (``split`` names it in errors)."""
    paths = (sorted(p for p in Path(spec).iterdir() if p.suffix.lower() in ROLL_FILES)
             if isinstance(spec, (str, Path)) and Path(spec).is_dir() else
             [Path(p) for p in ([spec] if isinstance(spec, (str, Path)) else spec)])
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no file or folder {path} (the {split} split)")
    if not paths:
        raise ValueError(f"no music files ({', '.join(ROLL_FILES)}) in {spec} "
                         f"(the {split} split)")
    return [roll for p in paths for roll in read_rolls(p, fs)]


def load_music_files(files: dict, fs: float = 4.0) -> dict[str, list[np.ndarray]]:
    """{"train", "val", "test"}: each a folder of music files or a list of files."""
    return {split: read_music(files[split], split, fs) for split in SPLITS}


def pad_rolls(rolls: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """(T_i, 88) rolls -> ``rolls`` (B, T, 88) float, zero-padded, and ``lengths`` (B,)."""
    lengths = torch.tensor([len(r) for r in rolls])
    batch = torch.zeros(len(rolls), int(lengths.max()), NUM_NOTES)
    for row, roll in enumerate(rolls):
        batch[row, :len(roll)] = roll
    return {"rolls": batch, "lengths": lengths}


def transpose(roll: torch.Tensor, semitones: int, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """The roll moved by a random whole number of semitones in [-semitones, semitones], as
    far as its lowest and highest notes stay on the keyboard."""
    keys = roll.any(0).nonzero().flatten()
    if not semitones or not len(keys):
        return roll
    low, high = max(-semitones, -int(keys[0])), min(semitones, roll.size(1) - 1 - int(keys[-1]))
    shift = int(torch.randint(low, high + 1, (), generator=generator))
    return torch.roll(roll, shift, dims=1)  # nothing wraps round: the range was checked


class Transposed(torch.utils.data.Dataset):
    """Training pieces, each transposed at random every time it is drawn (data augmentation:
    the same music in another key). Draws from torch's global generator, which
    ``seqkit.resume.Resume`` reseeds every epoch, so a resumed run sees the same keys (with
    num_workers=0, the default)."""

    def __init__(self, rolls: list[torch.Tensor], semitones: int) -> None:
        self.rolls, self.semitones = rolls, semitones

    def __len__(self) -> int:
        return len(self.rolls)

    def __getitem__(self, index: int) -> torch.Tensor:
        return transpose(self.rolls[index], self.semitones)


class MusicData(SplitDataModule):
    """``dataset``: jsb_chorales | nottingham | musedata | piano_midi (``.mat`` rolls),
    bach_chorales (music21, offline), or null with ``files`` (MIDI, .npy, .npz; test may be
    left out). Batches: ``rolls`` (B, T, 88) and ``lengths``. ``fs`` (frames per second)
    places MIDI files on the grid and times generated MIDI; the benchmarks' rolls have one
    frame per beat (quarter note).
    ``transpose`` > 0 moves each training piece by a random interval of up to that many
    semitones every epoch."""

    task, plain = "music", ("fs",)
    predictor = "MusicGenerator"  # the seqkit.inference class a checkpoint builds

    def __init__(self, dataset: str | None = "bach_chorales", files: dict | None = None,
                 fs: float = 2.0, transpose: int = 0, batch_size: int = 8,
                 num_workers: int = 0) -> None:
        super().__init__(dataset, files,
                         "give either dataset=<name> or files={train, val, test} (MIDI)")
        self.fs, self.transpose = fs, transpose
        self.batch_size, self.num_workers = batch_size, num_workers
        self.fitted = True  # nothing is learnt from the training pieces

    def read_file(self, spec, split: str) -> list[np.ndarray]:
        return read_music(spec, split, self.fs)

    def read_all(self) -> dict[str, list[np.ndarray]]:
        return bach_chorales() if self.dataset == "bach_chorales" else \
            load_benchmark(self.dataset)

    def encode(self, rolls: list[np.ndarray], split: str) -> list[torch.Tensor]:
        pieces = [torch.from_numpy(r.astype(np.float32)) for r in rolls if len(r) > 1]
        log.info("%s, %s split: %d pieces, %d frames", self.dataset or "MIDI files", split,
                 len(pieces), sum(map(len, pieces)))
        return pieces

    def split_dataset(self, split: str):
        if split == "train" and self.transpose:
            return Transposed(self.splits["train"], self.transpose)
        return self.splits[split]

    def length(self, item: torch.Tensor) -> int:
        return len(item)

    def collate(self, items: list[torch.Tensor]) -> dict:
        return pad_rolls(items)

    def dims(self) -> dict:
        return {"num_notes": NUM_NOTES}

    def note_frequencies(self) -> torch.Tensor:
        """(88,) the share of training frames in which each note sounds, add-one smoothed:
        (count + 1) / (frames + 2), so a note the training pieces never play is rare, not
        impossible."""
        rolls = torch.cat(self.split("train"))
        return (rolls.sum(0) + 1) / (len(rolls) + 2)

    def init_model(self, model) -> None:
        """A new model's output bias starts from the training notes' frequencies (see
        ``PianoRollLM.note_bias``)."""
        model.init_output_bias(self.note_frequencies())

    def artifacts(self) -> dict:
        """The frames per second, and a primer: the first piece of the test (else val)."""
        primer = self.split("test" if self.has_split("test") else "val")[0][:16]
        return {"task": self.task, "fs": self.fs, "dataset": self.dataset,
                "primer": primer.numpy().astype(bool).tolist()}
