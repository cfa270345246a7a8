"""Greedy, beam search and sampling against a tiny seeded table "model" and brute force."""
from collections import namedtuple
from itertools import product

import pytest
import torch

from seqkit.decoding import (Decoded, beam_search, greedy, layer_step, sample, select_rows,
                             swap_layers, top_k_filter, top_p_filter)
from seqkit.decoding.beam import Finalists, banned_ngrams

EOS, BOS = 0, 1
Memory = namedtuple("Memory", "prev pos")


class TableModel:
    """A deterministic step: next-token logits from seeded tables indexed by the sentence
    (row id), the last two tokens and the position, in float64. The state mixes a dict, a
    named tuple, a string and a 0-dim tensor, so select_rows must walk a real pytree; the last
    two tokens make the output depend on the history, so a wrong beam reorder shows."""

    def __init__(self, V=5, sentences=64, seed=0, eos_bias=0.0, repeat_bias=0.0, scale=1.5):
        g = torch.Generator().manual_seed(seed)
        self.V = V
        self.trans = torch.randn(V, V, V, generator=g, dtype=torch.float64) * scale
        self.trans[:, :, EOS] += eos_bias
        for a, b in product(range(V), repeat=2):   # "a a" and "b a b": repeats n-grams
            self.trans[b, a, a] += repeat_bias
            self.trans[b, a, b] += repeat_bias
        self.sentence = torch.randn(sentences, V, generator=g, dtype=torch.float64)
        self.position = torch.randn(16, V, generator=g, dtype=torch.float64)
        self.calls = []                             # the log-probs of every step, (N, V)

    def state(self, sentences):
        sentences = torch.as_tensor(sentences)
        memory = Memory(torch.full_like(sentences, BOS), torch.zeros_like(sentences))
        return {"sentence": sentences, "memory": memory, "name": "table", "scale": torch.tensor(1.)}

    def __call__(self, tokens, state):
        prev, pos = state["memory"]
        logits = (self.trans[prev, tokens] + self.sentence[state["sentence"]]
                  + self.position[pos.clamp(max=15)])
        log_probs = logits.log_softmax(dim=-1)
        self.calls.append(log_probs)
        return log_probs, {**state, "memory": Memory(tokens, pos + 1)}

    def log_prob(self, sentence, tokens):
        """log p(tokens | sentence) by feeding the tokens one at a time."""
        state, prev, total = self.state([sentence]), torch.tensor([BOS]), 0.0
        for token in tokens:
            log_probs, state = self(prev, state)
            total += log_probs[0, token].item()
            prev = torch.tensor([token])
        return total


def penalised(log_prob, length, alpha, penalty):
    return log_prob / (((5 + length) / 6) ** alpha if penalty == "gnmt" else length ** alpha)


def all_sequences(V, max_len, min_len=0):
    """Every sequence a search can return: ending with eos after >= min_len tokens, or
    max_len tokens without eos."""
    words = [v for v in range(V) if v != EOS]
    for n in range(min_len, max_len):
        yield from (body + (EOS,) for body in product(words, repeat=n))
    yield from product(words, repeat=max_len)


def rows_of(decoded: Decoded):
    return [row[:n].tolist() for row, n in zip(decoded.tokens, decoded.lengths)]


def has_repeated_ngram(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def test_select_rows_walks_the_pytree():
    state = {"a": (torch.arange(3), [Memory(torch.eye(3), "tag")]), "none": None,
             "step": torch.tensor(7)}
    out = select_rows(state, torch.tensor([2, 2, 0]))
    assert out["a"][0].tolist() == [2, 2, 0]
    assert torch.equal(out["a"][1][0].prev, torch.eye(3)[[2, 2, 0]])
    assert out["a"][1][0].pos == "tag" and out["none"] is None and out["step"].item() == 7


@pytest.mark.parametrize("history, n, banned", [
    ([1, 2, 1], 2, {2}), ([3, 3], 2, {3}), ([1, 2, 3, 1, 2], 3, {3}), ([1, 2], 1, {1, 2}),
    ([1, 2, 3], 2, set()), ([1], 2, set())])
def test_banned_ngrams(history, n, banned):
    mask = banned_ngrams(torch.tensor([history]), n, 5)
    assert set(mask[0].nonzero().flatten().tolist()) == banned


@pytest.mark.parametrize("alpha, live_log_prob, can_improve", [
    (0.0, -3.0, False),   # raw log-probs only fall: -3 can never beat -2
    (1.0, -3.0, True),    # at 10 tokens, -3 / 10 beats -2 / 1
    (-1.0, -0.9, True),   # at 2 tokens, -0.9 * 2 beats -2 * 1 (though at 10 it would not)
    (-1.0, -1.1, False)])
def test_finalists_bound_the_live_beams(alpha, live_log_prob, can_improve):
    finalists = Finalists(1, alpha, "avg")
    finalists.add([EOS], -2.0)
    assert finalists.can_improve(live_log_prob, 1, max_len=10) == can_improve


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_len", [0, 2])
def test_beam_size_one_is_greedy(seed, min_len):
    model = TableModel(V=6, seed=seed, eos_bias=1.0)
    expected = greedy(model, model.state(range(6)), BOS, EOS, max_len=6, min_len=min_len)
    hyps = beam_search(model, model.state(range(6)), BOS, EOS, beam_size=1, max_len=6,
                       min_len=min_len)
    assert [h[0].tokens for h in hyps] == rows_of(expected)
    assert torch.allclose(torch.tensor([h[0].log_prob for h in hyps], dtype=torch.float64),
                          expected.scores)


@pytest.mark.parametrize("alpha, penalty, min_len", [
    (0.0, "gnmt", 0), (1.0, "gnmt", 0), (0.7, "avg", 0), (-0.5, "gnmt", 0), (1.0, "gnmt", 2)])
def test_wide_beam_finds_the_exhaustive_best(alpha, penalty, min_len):
    V, max_len, n_best = 5, 4, 5
    model = TableModel(V=V, seed=1, eos_bias=0.5)
    hyps = beam_search(model, model.state([0, 1]), BOS, EOS, beam_size=V ** max_len,
                       max_len=max_len, min_len=min_len, length_penalty=alpha, penalty=penalty,
                       n_best=n_best)
    for sentence, found in enumerate(hyps):
        ranked = sorted(((penalised(model.log_prob(sentence, s), len(s), alpha, penalty), s)
                         for s in all_sequences(V, max_len, min_len)), reverse=True)
        assert [tuple(h.tokens) for h in found] == [s for _, s in ranked[:n_best]]
        assert [h.score for h in found] == pytest.approx([score for score, _ in ranked[:n_best]])


def test_batched_beam_equals_one_sentence_at_a_time():
    model = TableModel(V=6, seed=2, eos_bias=0.5)
    settings = dict(beam_size=3, max_len=6, length_penalty=0.6, no_repeat_ngram=2, n_best=3)
    batched = beam_search(model, model.state([3, 4, 5]), torch.tensor([1, 2, 3]), EOS,
                          **settings)
    alone = [beam_search(model, model.state([s]), bos, EOS, **settings)[0]
             for s, bos in zip([3, 4, 5], [1, 2, 3])]
    for got, want in zip(batched, alone):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want])


def test_static_state_moves_only_with_its_sentence():
    """``sentence`` is the same for every beam of a sentence: declared static, it is not
    reordered per step, only when sentences leave the batch (they end at different steps)."""
    model = TableModel(V=6, seed=6, eos_bias=0.5)
    settings = dict(beam_size=3, max_len=8, length_penalty=0.6, n_best=2)
    for stop in ("exact", "top"):
        plain = beam_search(model, model.state(range(12)), BOS, EOS, stop=stop, **settings)
        static = beam_search(model, model.state(range(12)), BOS, EOS, stop=stop,
                             static=("sentence",), **settings)
        assert [[h.tokens for h in s] for s in static] == [[h.tokens for h in s] for s in plain]
        assert len({len(s[0].tokens) for s in plain}) > 1


def two_ways(tokens, state):
    """eos first (p 0.6) or token 2 then eos (0.4 * 0.98): the longer one wins under an avg
    length penalty of alpha 1 (-0.94 / 2 > -0.51 / 1) but its first step is not the best."""
    first = torch.tensor([0.6, 0.0, 0.4], dtype=torch.float64)
    after = torch.tensor([0.98, 0.01, 0.01], dtype=torch.float64)
    return torch.where((tokens == BOS)[:, None], first, after).log(), state


@pytest.mark.parametrize("stop, expected", [("exact", [2, EOS]), ("top", [EOS])])
def test_stop_top_ends_when_the_best_candidate_ends(stop, expected):
    hyps = beam_search(two_ways, {"row": torch.zeros(1)}, BOS, EOS, beam_size=2, max_len=5,
                       length_penalty=1.0, penalty="avg", stop=stop)
    assert hyps[0][0].tokens == expected


@pytest.mark.parametrize("seed", range(3))
def test_stop_top_is_exact_without_a_length_penalty(seed):
    """Raw log-probabilities only fall, so an eos on top can no longer be beaten."""
    model = TableModel(V=6, seed=seed, eos_bias=0.3)
    found = {stop: beam_search(model, model.state(range(16)), BOS, EOS, beam_size=4,
                               max_len=8, stop=stop) for stop in ("exact", "top")}
    assert [h[0].tokens for h in found["top"]] == [h[0].tokens for h in found["exact"]]


def test_no_repeat_ngram_blocks_repeated_bigrams():
    model = TableModel(V=5, seed=3, eos_bias=-3.0, repeat_bias=4.0)
    free = greedy(model, model.state(range(8)), BOS, EOS, max_len=8)
    assert any(has_repeated_ngram(row, 2) for row in rows_of(free))  # the model does repeat
    for hyps in beam_search(model, model.state(range(8)), BOS, EOS, beam_size=4, max_len=8,
                            no_repeat_ngram=2, n_best=4):
        assert hyps and not any(has_repeated_ngram(h.tokens, 2) for h in hyps)


def test_n_best_distinct_sorted_and_scored():
    model = TableModel(V=6, seed=4, eos_bias=0.5)
    for sentence, hyps in enumerate(beam_search(model, model.state([0, 1]), BOS, EOS,
                                                beam_size=6, max_len=5, length_penalty=1.0,
                                                n_best=4)):
        assert len(hyps) == 4 and len({tuple(h.tokens) for h in hyps}) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.log_prob == pytest.approx(model.log_prob(sentence, h.tokens))
            assert h.score == pytest.approx(penalised(h.log_prob, len(h.tokens), 1.0, "gnmt"))


def test_min_len_holds_eos_back():
    model = TableModel(V=5, seed=5, eos_bias=4.0)
    assert greedy(model, model.state(range(4)), BOS, EOS, max_len=6).lengths.tolist() == [1] * 4
    decoded = [greedy(model, model.state(range(4)), BOS, EOS, max_len=6, min_len=3),
               sample(model, model.state(range(4)), BOS, EOS, max_len=6, min_len=3,
                      generator=torch.Generator().manual_seed(0))]
    rows = [row for d in decoded for row in rows_of(d)]
    rows += [h.tokens for hyps in beam_search(model, model.state(range(4)), BOS, EOS,
                                              beam_size=3, max_len=6, min_len=3, n_best=3)
             for h in hyps]
    assert all(EOS not in row[:3] and len(row) >= 4 for row in rows)


@pytest.mark.parametrize("temperature", [1e-6, 0.0])
def test_cold_sampling_is_greedy(temperature):
    model = TableModel(V=6, seed=6, eos_bias=0.5)
    expected = greedy(model, model.state(range(8)), BOS, EOS, max_len=6, min_len=1)
    got = sample(model, model.state(range(8)), BOS, EOS, max_len=6, min_len=1,
                 temperature=temperature, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got.tokens, expected.tokens)
    assert torch.equal(got.lengths, expected.lengths)
    assert torch.allclose(got.scores, expected.scores)


def test_sampling_follows_the_generator():
    model = TableModel(V=6, seed=7)

    def draw(seed):
        return sample(model, model.state(range(16)), BOS, EOS, max_len=5,
                      generator=torch.Generator().manual_seed(seed)).tokens
    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def nucleus(log_probs, p):
    """The smallest set of most probable tokens of one row holding >= p, by plain Python."""
    ranked = sorted(enumerate(log_probs.exp().tolist()), key=lambda x: -x[1])
    kept, mass = set(), 0.0
    for token, prob in ranked:
        kept.add(token)
        mass += prob
        if mass >= p:
            return kept
    return kept


@pytest.mark.parametrize("top_k, top_p", [(2, 1.0), (0, 0.6)])
def test_sampling_stays_in_top_k_and_nucleus(top_k, top_p):
    model = TableModel(V=6, seed=8, scale=1.0)
    out = sample(model, model.state(range(64)), BOS, EOS, max_len=5, top_k=top_k, top_p=top_p,
                 generator=torch.Generator().manual_seed(0))
    allowed_sizes, total = [], torch.zeros(64, dtype=torch.float64)
    for t, log_probs in enumerate(model.calls):
        for row in range(64):
            if t >= out.lengths[row]:
                continue
            allowed = (set(log_probs[row].topk(top_k).indices.tolist()) if top_k
                       else nucleus(log_probs[row], top_p))
            assert out.tokens[row, t].item() in allowed
            allowed_sizes.append(len(allowed))
            total[row] += log_probs[row, out.tokens[row, t]]
    assert min(allowed_sizes) < model.V      # the filter did exclude tokens
    assert torch.allclose(out.scores, total)


def test_filters_keep_at_least_one_token():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert top_k_filter(logits, 2).isfinite().tolist() == [[True, False, True, False]]
    assert top_p_filter(logits, 1e-9).isfinite().tolist() == [[True, False, False, False]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_greedy_pads_after_eos():
    model = TableModel(V=5, seed=9, eos_bias=1.5)
    out = greedy(model, model.state(range(8)), BOS, EOS, max_len=6, pad=-1)
    for row, n in zip(out.tokens.tolist(), out.lengths.tolist()):
        assert all(tok == -1 for tok in row[n:])
        assert EOS not in row[:n - 1] and (row[n - 1] == EOS or n == out.tokens.shape[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(beam_size=0), "beam_size"), (dict(penalty="none"), "penalty"),
    (dict(n_best=0), "n_best"), (dict(max_len=0), "max_len"), (dict(stop="never"), "stop")])
def test_beam_search_rejects_bad_arguments(kwargs, match):
    model = TableModel()
    with pytest.raises(ValueError, match=match):
        beam_search(model, model.state([0]), BOS, EOS, **{"beam_size": 2, "max_len": 3, **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_k=-1), "top_k")])
def test_sample_rejects_bad_arguments(kwargs, match):
    model = TableModel()
    with pytest.raises(ValueError, match=match):
        sample(model, model.state([0]), BOS, EOS, 3, **kwargs)


def test_batch_size_needs_a_tensor():
    with pytest.raises(ValueError, match="batch size"):
        greedy(lambda tokens, state: (None, state), {"name": "no tensors"}, BOS, EOS, 3)
    with pytest.raises(ValueError, match="rows"):
        greedy(TableModel(), TableModel().state([0, 1]), torch.tensor([BOS]), EOS, 3)


def test_a_step_in_the_layers_layout_searches_every_row_as_its_own():
    """A step written for a recurrent layer's (num_layers, N, H) state, through
    ``layer_step`` and ``swap_layers``: a batched beam search gives each row what a search
    of that row alone gives (row selection on the right dimension), and greedy decoding what
    a plain argmax loop over the layer gives."""
    from seqkit.layers import LSTM

    torch.manual_seed(0)
    embed, lstm, out = torch.nn.Embedding(7, 4), LSTM(4, 5, num_layers=2), torch.nn.Linear(5, 7)

    def step(tokens, state):  # the layer's own layout: (2, N, 5) per state tensor
        y, state = lstm(embed(tokens)[None], state)
        return out(y[0]).log_softmax(-1), state

    with torch.no_grad():
        _, start = lstm(embed(torch.tensor([[1, 3, 5], [2, 4, 6]])))  # 3 rows' primes
        bos = torch.tensor([2, 4, 1])
        batched = beam_search(layer_step(step), swap_layers(start), bos, 0, beam_size=3,
                              max_len=5)
        alone = [beam_search(layer_step(step), swap_layers(tuple(s[:, i:i + 1] for s in start)),
                             bos[i:i + 1], 0, beam_size=3, max_len=5)[0] for i in range(3)]
        assert [[h.tokens for h in row] for row in batched] == \
            [[h.tokens for h in row] for row in alone]
        tokens, state, by_hand = bos, start, []
        for _ in range(5):
            log_probs, state = step(tokens, state)
            tokens = log_probs.argmax(-1)
            by_hand.append(tokens)
        found = greedy(layer_step(step), swap_layers(start), bos, 0, max_len=5).tokens
        expected = torch.stack(by_hand, 1)
        for row, want in zip(found.tolist(), expected.tolist()):
            end = want.index(0) + 1 if 0 in want else len(want)
            assert row[:end] == want[:end]
