"""The CRF against brute-force enumeration of every tag path, in float64."""
from itertools import product

import pytest
import torch
from torch.func import functional_call

from seqkit.layers.crf import CRF, allowed_transitions
from seqkit.metrics.spans import transition_allowed

SCHEME_TAGS = {"IOB1": ["O", "I-X", "B-X", "I-Y"], "IOB2": ["O", "B-X", "I-X", "B-Y", "I-Y"],
               "IOBES": ["O", "B-X", "I-X", "E-X", "S-X"]}


def random_crf(num_tags, constraints=(), scale=1.0):
    crf = CRF(num_tags, *constraints).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, scale)
    return crf


def batch(num_tags, lengths=(4, 1, 3, 2), scale=1.0):
    """emissions (B, T, K) float64 and a left-aligned mask (B, T) for ``lengths``."""
    T = max(lengths)
    mask = torch.arange(T) < torch.tensor(lengths)[:, None]
    return torch.randn(len(lengths), T, num_tags, dtype=torch.float64) * scale, mask


def is_legal(crf, path):
    return bool(crf.allowed_start[path[0]] and crf.allowed_end[path[-1]]
                and all(crf.allowed[a, b] for a, b in zip(path, path[1:])))


def path_score(crf, emissions, path):
    """s(path) of one sequence's emissions (n, K), summed by hand from the parameters."""
    trans = crf.transitions.tolist()
    return (crf.start_transitions[path[0]].item() + crf.end_transitions[path[-1]].item()
            + sum(emissions[t, y].item() for t, y in enumerate(path))
            + sum(trans[a][b] for a, b in zip(path, path[1:])))


def brute_force(crf, emissions, mask, legal_only=False):
    """[(log Z, best path, best score)] per sequence, enumerating every (legal) path."""
    out = []
    for e, m in zip(emissions, mask):
        n = int(m.sum())
        paths = [p for p in product(range(crf.num_tags), repeat=n)
                 if not legal_only or is_legal(crf, p)]
        scores = torch.tensor([path_score(crf, e, p) for p in paths], dtype=torch.float64)
        best = int(scores.argmax())
        out.append((torch.logsumexp(scores, 0).item(), list(paths[best]), scores[best].item()))
    return out


@pytest.mark.parametrize("num_tags", [3, 4])
def test_log_partition_score_and_nll_equal_enumeration(num_tags):
    crf = random_crf(num_tags)
    emissions, mask = batch(num_tags)
    tags = torch.randint(num_tags, mask.shape)
    expected = brute_force(crf, emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    score = crf.score(emissions, tags, mask)
    nll = crf.nll(emissions, tags, mask, reduction="none")
    for b, (want_log_z, _, _) in enumerate(expected):
        want_score = path_score(crf, emissions[b], tags[b, :int(mask[b].sum())].tolist())
        assert log_z[b].item() == pytest.approx(want_log_z, abs=1e-9)
        assert score[b].item() == pytest.approx(want_score, abs=1e-9)
        assert nll[b].item() == pytest.approx(want_log_z - want_score, abs=1e-9)
    assert crf.nll(emissions, tags, mask).item() == pytest.approx(nll.mean().item(), abs=1e-12)
    assert crf(emissions, tags, mask, reduction="sum").item() == pytest.approx(nll.sum().item())


@pytest.mark.parametrize("num_tags", [3, 4])
def test_viterbi_finds_the_enumerated_best_path(num_tags):
    crf = random_crf(num_tags)
    emissions, mask = batch(num_tags)
    tags, best_scores = crf.viterbi(emissions, mask)
    decoded = crf.decode(emissions, mask)
    for b, (_, path, best) in enumerate(brute_force(crf, emissions, mask)):
        assert decoded[b] == path
        assert tags[b, :len(path)].tolist() == path and not tags[b, len(path):].any()
        assert best_scores[b].item() == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("scheme", list(SCHEME_TAGS))
def test_constrained_crf_equals_enumeration_over_legal_paths(scheme):
    names = SCHEME_TAGS[scheme]
    crf = random_crf(len(names), allowed_transitions(names, scheme))
    emissions, mask = batch(len(names))
    log_z = crf.log_partition(emissions, mask)
    decoded = crf.decode(emissions, mask)
    for b, (want_log_z, path, _) in enumerate(brute_force(crf, emissions, mask, True)):
        assert log_z[b].item() == pytest.approx(want_log_z, abs=1e-9)
        assert decoded[b] == path


@pytest.mark.parametrize("scheme", list(SCHEME_TAGS))
def test_decoded_paths_never_take_a_forbidden_move(scheme):
    names = SCHEME_TAGS[scheme]
    crf = random_crf(len(names), allowed_transitions(names, scheme), scale=10.0)
    # emissions far beyond the loss's finite penalty: decoding must still obey the scheme
    emissions, mask = batch(len(names), lengths=(6, 5, 1, 3, 6, 2) * 10, scale=1e5)
    for path in crf.decode(emissions, mask):
        tags = ["O", *(names[i] for i in path), "O"]  # "O": the sentence's start and end
        assert all(transition_allowed(a, b, scheme) for a, b in zip(tags, tags[1:])), tags


def test_allowed_transitions_of_iob2_and_iobes():
    allowed, start, end = allowed_transitions(["O", "B-X", "I-X", "B-Y", "I-Y"], "IOB2")
    assert start.tolist() == [True, True, False, True, False] and end.all()
    assert allowed[:, 2].tolist() == [False, True, True, False, False]  # into I-X
    assert allowed[:, [0, 1, 3]].all()
    allowed, start, end = allowed_transitions(["O", "B-X", "I-X", "E-X", "S-X"], "IOBES")
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]
    assert allowed[1].tolist() == [False, False, True, True, False]  # after B-X


def test_gradcheck_nll():
    names = SCHEME_TAGS["IOB2"]
    for constraints in ((), allowed_transitions(names, "IOB2")):
        crf = random_crf(len(names), constraints)
        emissions, mask = batch(len(names), lengths=(3, 1, 2))
        tags = torch.tensor([[1, 2, 0], [3, 0, 0], [0, 1, 0]])
        params = {k: v.detach().clone().requires_grad_() for k, v in crf.named_parameters()}

        def nll(emissions, transitions, start_transitions, end_transitions):
            values = {"transitions": transitions, "start_transitions": start_transitions,
                      "end_transitions": end_transitions}
            return functional_call(crf, values, (emissions, tags, mask))

        inputs = (emissions.requires_grad_(), params["transitions"],
                  params["start_transitions"], params["end_transitions"])
        assert torch.autograd.gradcheck(nll, inputs)


def test_masked_positions_do_not_matter():
    crf = random_crf(4)
    emissions, mask = batch(4, lengths=(4, 2, 3))
    tags = torch.randint(4, mask.shape)
    garbage_emissions = emissions.masked_fill(~mask[..., None], 1e6).requires_grad_()
    garbage_tags = tags.masked_fill(~mask, -100)
    emissions.requires_grad_()
    clean = crf.nll(emissions, tags, mask, reduction="none")
    dirty = crf.nll(garbage_emissions, garbage_tags, mask, reduction="none")
    assert torch.equal(clean, dirty)
    clean.sum().backward()
    dirty.sum().backward()
    assert torch.equal(emissions.grad, garbage_emissions.grad)
    assert not emissions.grad[~mask].any()
    assert crf.decode(emissions, mask) == crf.decode(garbage_emissions, mask)


def test_forbidden_gold_move_gives_a_finite_loss():
    names = SCHEME_TAGS["IOB2"]
    crf = random_crf(len(names), allowed_transitions(names, "IOB2"))
    emissions, mask = batch(len(names), lengths=(2,))
    emissions.requires_grad_()
    loss = crf.nll(emissions, torch.tensor([[0, 2]]), mask)  # I-X after O
    loss.backward()
    assert 1e3 < loss.item() < float("inf") and torch.isfinite(emissions.grad).all()


def test_state_dict_and_errors():
    crf = CRF(3, *allowed_transitions(["O", "B-X", "I-X"], "IOB2"))
    assert sorted(crf.state_dict()) == ["end_transitions", "start_transitions", "transitions"]
    emissions = torch.randn(2, 3, 3)
    with pytest.raises(ValueError, match="mask\\[:, 0\\] must be all True"):
        crf.log_partition(emissions, torch.tensor([[True, True, False], [False, False, False]]))
    with pytest.raises(ValueError, match=r"emissions must be \(B, T >= 1, 3\)"):
        crf.decode(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="reduction"):
        crf.nll(emissions, torch.zeros(2, 3, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="allowed must be a bool tensor of shape"):
        CRF(3, torch.ones(2, 2, dtype=torch.bool))
    assert crf.decode(emissions) == [row.tolist() for row in crf.viterbi(emissions)[0]]


def test_loss_and_paths_equal_pytorch_crf():
    """The same parameters in pytorch-crf (a test extra): the same loss, the same paths."""
    torchcrf = pytest.importorskip("torchcrf")
    gen = torch.Generator().manual_seed(3)
    ours, peer = CRF(5), torchcrf.CRF(5, batch_first=True)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(ours, name).copy_(torch.randn(getattr(peer, name).shape, generator=gen))
            getattr(peer, name).copy_(getattr(ours, name))
    emissions = torch.randn(6, 8, 5, generator=gen, dtype=torch.float64)
    tags = torch.randint(0, 5, (6, 8), generator=gen)
    mask = torch.arange(8) < torch.tensor([8, 1, 5, 3, 8, 2])[:, None]
    ours, peer = ours.double(), peer.double()
    torch.testing.assert_close(ours.nll(emissions, tags, mask, reduction="none"),
                               -peer(emissions, tags, mask, reduction="none"))
    assert ours.decode(emissions, mask) == peer.decode(emissions, mask)
