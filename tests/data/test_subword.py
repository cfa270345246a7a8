"""Subword units (sentencepiece) learnt on parallel text, and kept in a checkpoint."""
import pytest

from seqkit.data.subword import Subwords

pytestmark = pytest.mark.usefixtures("derived_cache")


@pytest.mark.parametrize("model_type, joint", [("bpe", True), ("unigram", False)])
def test_subwords_round_trip_and_survive_the_checkpoint(parallel_corpus, model_type, joint):
    sources = (parallel_corpus / "train.de").read_text().splitlines()
    targets = (parallel_corpus / "train.en").read_text().splitlines()
    sub = Subwords.learn(sources, targets, vocab_size=40, model_type=model_type, joint=joint)
    assert sub.joint == joint and max(sub.sizes()) <= 40
    assert sub.decode_tgt(sub.encode_tgt(targets[:20])) == targets[:20]
    again = Subwords.from_state_dict(sub.state_dict())
    assert again.encode_src(sources[:20]) == sub.encode_src(sources[:20])
