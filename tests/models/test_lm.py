"""The language model: tied weights, cold sampling is greedy, top-k and top-p keep to their
sets."""
import pytest
import torch

from seqkit.decoding import greedy
from seqkit.decoding.sampling import top_k_filter, top_p_filter
from tests.helpers import language_model


def test_tied_weights_share_one_matrix():
    model = language_model(vocab_size=9, tie_weights=True)
    assert model.out.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in language_model(vocab_size=9).parameters())


def test_cold_sampling_is_greedy():
    model = language_model().eval()
    prime = torch.tensor([1, 4, 2])
    cold = model.generate(prime, 15, temperature=1e-4, generator=torch.Generator())
    _, state = model(prime[None, :-1])
    state = tuple(s.transpose(0, 1) for s in state)
    hot = greedy(model.step, state, prime[-1:], eos=model.vocab_size, max_len=15)
    assert torch.equal(cold, hot.tokens)
    assert torch.equal(model.generate(prime, 15, temperature=0), hot.tokens)


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.6), (4, 0.8)])
def test_top_k_and_top_p_never_emit_a_token_outside_the_kept_set(top_k, top_p):
    model = language_model(vocab_size=12).eval()
    seen, original = [], model.step

    def step(tokens, state):
        log_probs, state = original(tokens, state)
        seen.append(log_probs)
        return log_probs, state

    model.step = step
    out = model.generate(torch.tensor([3]), 30, num_samples=8, temperature=1.5,
                         generator=torch.Generator().manual_seed(0), top_k=top_k, top_p=top_p)
    model.step = original
    for t, log_probs in enumerate(seen):
        kept = top_p_filter(top_k_filter(log_probs / 1.5, top_k), top_p) > float("-inf")
        assert kept.gather(1, out[:, t:t + 1]).all()
        assert kept.sum(1).max() < 12  # the filters did remove something
