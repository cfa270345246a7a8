"""Language-model data: the token stream's rows and windows, tokens and their inverse, Tiny
Shakespeare's split, bad text files named."""
import pytest
import torch

from seqkit.data.cache import dataset_file
from seqkit.data.lm import EOS, LMData, Stream, detokenize, read_text, tokens
from seqkit.data.vocab import Vocab
from tests.helpers import shared_file


def test_rows_are_contiguous_stretches_and_batches_continue_them():
    ids = torch.arange(23)
    stream = Stream(ids, rows=2, bptt=4)            # (23 - 1) // 2 = 11 columns per row
    batches = list(stream)
    assert len(batches) == len(stream) == 3
    assert [b["inputs"].shape for b in batches] == [(2, 4), (2, 4), (2, 3)]
    inputs = torch.cat([b["inputs"] for b in batches], 1)
    targets = torch.cat([b["targets"] for b in batches], 1)
    assert inputs.tolist() == [list(range(0, 11)), list(range(11, 22))]
    assert torch.equal(targets, inputs + 1)


def test_an_offset_moves_the_cuts_and_keeps_every_column():
    stream = Stream(torch.arange(23), rows=2, bptt=4, offset=3)
    widths = [b["inputs"].size(1) for b in stream]
    assert widths == [3, 4, 4] and len(stream) == 3
    assert torch.cat([b["inputs"] for b in stream], 1)[0].tolist() == list(range(11))


def test_each_process_takes_its_own_rows():
    ids = torch.arange(41)
    rows = [torch.cat([b["inputs"] for b in Stream(ids, 2, 3, rank, 2)], 1) for rank in (0, 1)]
    assert torch.cat(rows).flatten().tolist() == list(range(40))
    with pytest.raises(ValueError, match="3 tokens are too few for 4 rows"):
        Stream(torch.arange(3), rows=4, bptt=2)


def test_tokens_and_their_inverse():
    text = "the king\n is dead\n"
    assert tokens(text, "word") == ["the", "king", EOS, "is", "dead", EOS]
    assert detokenize(tokens(text, "word"), "word") == "the king\nis dead\n"
    assert detokenize(tokens(text, "char"), "char") == text
    with pytest.raises(ValueError, match="level"):
        tokens(text, "byte")
    # words as people type them: split at punctuation and clitics too, case kept
    assert tokens("Romeo, come!\nIt's late.\n", "word", "simple") == [
        "Romeo", ",", "come", "!", EOS, "It", "'s", "late", ".", EOS]
    with pytest.raises(ValueError, match="unknown tokenizer 'spacy'"):
        tokens(text, "word", "spacy")


def test_word_data_keeps_its_tokenizer_for_the_checkpoint(tmp_path):
    (tmp_path / "t.txt").write_text("Romeo, come!\nJuliet, come!\n" * 20)
    data = LMData(None, str(tmp_path / "t.txt"), level="word", tokenizer="simple")
    data.setup("fit")
    assert "!" in data.vocab and "come!" not in data.vocab
    artifacts = data.artifacts()
    assert artifacts["tokenizer"] == "simple"
    restored = LMData(None, str(tmp_path / "t.txt"), level="char")
    restored.restore(artifacts)
    assert (restored.level, restored.tokenizer) == ("word", "simple")


def test_tiny_shakespeare_is_split_as_nanogpt_does():
    shared_file("tinyshakespeare", "input.txt")  # skips where the data is not here
    data = LMData()
    data.setup()
    text = read_text(dataset_file("tinyshakespeare", "input.txt"))
    n = {k: len(v) for k, v in data.ids.items()}
    assert n["train"] + n["val"] == len(text) == 1115394 and n["train"] == int(len(text) * 0.9)
    assert n["test"] == n["val"] and len(data.vocab) == 66  # 65 characters and <unk>
    assert data.vocab.decode(data.ids["val"][:20]) == list(text[n["train"]:][:20])


def test_bad_text_files_are_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbroken \xff byte\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: byte 0xff"):
        LMData(dataset=None, files=str(bad)).setup()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty.txt:1: no text"):
        LMData(dataset=None, files=str(empty)).setup()
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        LMData(dataset=None, files=str(tmp_path / "nothing.txt")).setup()


def test_a_stream_too_short_for_its_rows_is_named(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("abcdefghij" * 20 + "\n")
    data = LMData(dataset=None, files=str(text), eval_batch_size=64)
    data.setup()
    with pytest.raises(ValueError, match=r"short.txt \(val split\): 21 tokens are too few for "
                                         r"64 rows \(data.eval_batch_size"):
        data.val_dataloader()


def test_lm_data_names_a_bad_user_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"good line\n\x80bad\n")
    with pytest.raises(ValueError, match=r"corpus.txt:2: byte 0x80"):
        LMData(dataset=None, files=str(path)).setup()


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("files", ["one", "three"])
def test_the_store_holds_what_reading_the_text_whole_gives(level, files, tmp_path, monkeypatch):
    """Streamed in chunks smaller than a line's worth (a cut mid-chunk, mid-line), the token
    store's ids equal the whole text read, cut and encoded at once; a second module over
    the same text maps the same files and counts nothing."""
    text = "".join(f"Line {i}, with words: {'ab' * (i % 7)} end.\n" for i in range(400))
    (tmp_path / "t.txt").write_text(text)
    for split in ("train", "val"):
        (tmp_path / f"{split}.txt").write_text(text[:3000] if split == "val" else text)
    spec = str(tmp_path / "t.txt") if files == "one" else {
        "train": str(tmp_path / "train.txt"), "val": str(tmp_path / "val.txt")}
    data = LMData(dataset=None, files=spec, level=level, val_fraction=0.3, tokenizer="simple")
    original = LMData._pieces
    monkeypatch.setattr(LMData, "_pieces", lambda self, path, start=0, stop=None:
                        original(self, path, start, stop, size=50))
    data.setup()
    whole = data.read_all() if files == "one" else {
        s: data.read_file(p, s) for s, p in spec.items()}
    assert data.vocab.state_dict() == Vocab.build([whole["train"]], pad=None).state_dict()
    for split, pieces in whole.items():
        assert data.ids[split].tolist() == data.vocab.encode(pieces), split
    assert files == "three" or data.ids["test"] is data.ids["val"]
    monkeypatch.setattr("seqkit.data.lm.Vocab.build", lambda *a, **k: pytest.fail("counted"))
    again = LMData(dataset=None, files=spec, level=level, val_fraction=0.3, tokenizer="simple")
    again.setup()
    assert again.ids["train"].tolist() == data.ids["train"].tolist()
    assert again.vocab.state_dict() == data.vocab.state_dict()


def test_word_level_with_a_sentencepiece_model(tmp_path):
    """data.tokenizer=<a .model file>: the stream is its pieces with <eos> closing each line,
    the checkpoint keeps the model, and a prime is split and the output joined with it."""
    from seqkit.data.subword import train_sentencepiece
    from seqkit.tasks.lm import generate_text
    from tests.helpers import language_model

    lines = [f"Romeo speaks {i} words, and Juliet answers!" for i in range(200)]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    model = tmp_path / "pieces.model"
    model.write_bytes(train_sentencepiece(lines, vocab_size=40, model_type="unigram"))
    data = LMData(dataset=None, files=str(tmp_path / "t.txt"), level="word",
                  tokenizer=str(model))
    data.setup()
    assert EOS in data.vocab and any(p.startswith("▁") for p in data.vocab.itos)
    artifacts = data.artifacts()
    assert artifacts["tokenizer"] == "sentencepiece" and artifacts["sentencepiece"]
    restored = LMData(dataset=None, files=str(tmp_path / "t.txt"), level="word")
    restored.restore(artifacts)
    assert restored.read_file(tmp_path / "t.txt", "val") == data.read_all()["train"] + \
        data.read_all()["val"]
    lm = language_model(vocab_size=len(data.vocab))
    text = generate_text(lm, {**artifacts}, "Romeo speaks", length=12, seed=0)[0]
    assert text.startswith("Romeo speaks") and "▁" not in text and EOS not in text
    assert detokenize(["▁Romeo", "▁spe", "aks", EOS, "▁Juliet"], "word", marked=True) == \
        "Romeo speaks\nJuliet"
