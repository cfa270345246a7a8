"""Music data: piano roll <-> MIDI (read back by a second library too), music21 scores, the
benchmarks' splits, numpy rolls, transposition, the note prior a new model starts at, WAV
rendering."""
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from seqkit.data.cache import data_root
from seqkit.data.music import bach_chorales, load_benchmark, midi_to_roll, roll_to_midi
from seqkit.models.music import PianoRollLM
from tests.helpers import layer, random_roll

pytestmark = pytest.mark.usefixtures("derived_cache")


def test_roll_to_midi_and_back_is_exact(tmp_path):
    roll = random_roll(T=40)
    roll[5:9, 40] = 1  # a held note
    path = roll_to_midi(roll, tmp_path / "a.mid", fs=4.0)
    back = midi_to_roll(path, fs=4.0)
    np.testing.assert_array_equal(back, roll[:len(back)])
    assert not roll[len(back):].any()  # only trailing silence may be cut


def test_midi_notes_survive_and_a_second_library_reads_them(tmp_path):
    import pretty_midi
    from music21 import converter

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    notes = [(60, 0.0, 1.0), (64, 0.5, 1.5), (67, 1.0, 2.25), (48, 2.5, 2.75)]  # on a 0.25 s grid
    piano.notes += [pretty_midi.Note(90, p, a, b) for p, a, b in notes]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "in.mid"))
    roll = midi_to_roll(tmp_path / "in.mid", fs=4.0)
    assert roll.sum() == sum(round((b - a) * 4) for _, a, b in notes)
    out = roll_to_midi(roll, tmp_path / "out.mid", fs=4.0)
    back = sorted((n.pitch, round(n.start, 6), round(n.end, 6))
                  for n in pretty_midi.PrettyMIDI(str(out)).instruments[0].notes)
    assert back == sorted(notes)
    # music21 (a second MIDI library) sees the same pitches, onsets and durations in beats
    # (pretty_midi writes 120 bpm: one beat = 0.5 s)
    score = converter.parse(str(out)).stripTies()  # a note across a barline is one note
    seen = sorted((p.midi, round(float(n.offset) / 2, 6),
                   round(float(n.offset + n.quarterLength) / 2, 6))
                  for n in score.flatten().notes for p in n.pitches)
    assert seen == sorted(notes)


def test_a_bad_midi_file_is_named(tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"MThd not really")
    with pytest.raises(ValueError, match=r"bad\.mid: not a readable MIDI file"):
        midi_to_roll(tmp_path / "bad.mid")


def test_a_music21_score_becomes_a_quarter_note_roll(monkeypatch):
    from music21 import chord, corpus, note, stream

    part = stream.Stream()
    part.append(note.Note("C4", quarterLength=2))   # MIDI 60, frames 0-1
    part.append(chord.Chord(["E4", "G4"], quarterLength=1))  # 64 and 67, frame 2
    # music21's corpus holds this one score (in C major: not transposed)
    monkeypatch.setattr(corpus, "getComposer", lambda name: [Path("one-score.mxl")])
    monkeypatch.setattr(corpus, "parse", lambda path: part)
    (roll,) = bach_chorales(frames_per_quarter=1)["test"]
    assert roll.shape == (3, 88)
    assert roll[:, 60 - 21].tolist() == [1, 1, 0]
    assert roll[2, [64 - 21, 67 - 21]].tolist() == [1, 1] and roll.sum() == 4


@pytest.mark.skipif(not (data_root() / "jsb_chorales").is_dir(), reason="needs SEQKIT_DATA")
@pytest.mark.parametrize("name, sizes", [("jsb_chorales", (229, 76, 77)),
                                         ("nottingham", (694, 173, 170))])
def test_benchmarks_have_the_official_splits(name, sizes):
    splits = load_benchmark(name)
    assert tuple(len(splits[k]) for k in ("train", "val", "test")) == sizes


def test_a_new_model_starts_at_the_training_notes_log_odds(tmp_path):
    from seqkit.data.music import MusicData

    pieces = [random_roll(T, seed=T, density=0.2) for T in (12, 9, 5)]
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        for i, roll in enumerate(pieces[:3 if split == "train" else 1]):
            np.save(tmp_path / split / f"{i}.npy", roll)
    data = MusicData(None, {s: str(tmp_path / s) for s in ("train", "val", "test")})
    data.setup()
    model = PianoRollLM(layer(hidden_size=12), embed_dim=8)
    data.init_model(model)
    frames = np.concatenate(pieces)  # add-one smoothed: a note never played is rare, not banned
    expected = torch.tensor((frames.sum(0) + 1) / (len(frames) + 2), dtype=torch.float32)
    torch.testing.assert_close(torch.sigmoid(model.out.bias), expected)
    kept = PianoRollLM(layer(hidden_size=12), embed_dim=8, note_bias=False)
    start = kept.out.bias.clone()
    data.init_model(kept)
    assert torch.equal(kept.out.bias, start)


def test_transposition_moves_every_note_alike_and_stays_on_the_keyboard():
    from seqkit.data.music import transpose

    roll = torch.zeros(6, 88)
    roll[0, 2], roll[3, 10], roll[5, 80] = 1, 1, 1   # room: 2 keys down, 7 up
    seen = set()
    for seed in range(60):
        moved = transpose(roll, 12, torch.Generator().manual_seed(seed))
        shift = int(moved[0].nonzero()) - 2
        assert moved.sum() == 3 and moved[3, 10 + shift] == 1 and moved[5, 80 + shift] == 1
        seen.add(shift)
    assert seen == set(range(-2, 8))
    assert torch.equal(transpose(roll, 0), roll)


def test_numpy_rolls_are_read_and_bad_ones_named(tmp_path):
    from seqkit.data.music import load_music_files

    np.save(tmp_path / "a.npy", random_roll(10))
    np.savez(tmp_path / "b.npz", x=random_roll(7), y=random_roll(5, seed=1))
    splits = load_music_files({"train": tmp_path, "val": [tmp_path / "a.npy"],
                               "test": str(tmp_path / "b.npz")})
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    np.save(tmp_path / "c.npy", np.full((4, 88), 2))
    with pytest.raises(ValueError, match=r"c\.npy: piece 0 is not a binary \(T, 88\)"):
        load_music_files({"train": tmp_path, "val": tmp_path, "test": tmp_path})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no music files"):
        load_music_files({"train": tmp_path / "empty", "val": [], "test": []})
    with pytest.raises(FileNotFoundError, match=r"no file or folder .*missing\.mid"):
        load_music_files({"train": [tmp_path / "missing.mid"], "val": [], "test": []})


def test_a_rendered_wav_lasts_as_long_as_its_midi_and_is_not_silent(tmp_path):
    import pretty_midi

    from seqkit.data.music import midi_to_wav

    roll = np.zeros((12, 88), bool)
    roll[0:4, 39], roll[2:8, 43], roll[9:11, 46] = True, True, True  # ends at frame 11
    midi = roll_to_midi(roll, tmp_path / "piece.mid", fs=4.0)
    path = midi_to_wav(midi, sample_rate=16000)
    assert path == tmp_path / "piece.wav"
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    end = pretty_midi.PrettyMIDI(str(midi)).get_end_time()
    assert end == pytest.approx(11 / 4.0)
    assert len(samples) / 16000 == pytest.approx(end, abs=1 / 16000)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 1000  # well above silence
    second = len(samples) // 11 * 10  # the last note sounds to the end
    assert np.abs(samples[second:]).max() > 1000
