"""Words for a pointer-generator: one vocabulary, the source's other words numbered after it."""
from seqkit.data.words import Words


def test_words_extend_the_vocabulary_with_source_words_and_decode_them():
    words = Words.learn(["the model learns the task", "the task"], ["the model"], min_freq=1)
    ids, oovs = words.extend("The Zyzzyva model eats zyzzyva and quokkas.")
    n = len(words.vocab)
    assert oovs == ["zyzzyva", "eats", "and", "quokkas", "."]
    assert ids[1] == ids[4] == n and ids[0] == words.vocab["the"]
    target = words.extend_target("quokkas learn the unknown", oovs)
    assert target[0] == n + 3 and target[3] == words.vocab.unk_index
    assert words.decode_tgt([target], [oovs]) == ["quokkas <unk> the <unk>"]
    assert Words.from_state_dict(words.state_dict()).extend("eats the")[0] == words.extend(
        "eats the")[0]
