"""The attentional encoder-decoder: step-by-step decoding equals teacher forcing, the fused
input-fed decoder equals its step loop, the output layer on kept positions, one batch
overfitted and decoded; the pointer-generator's mixed distribution over the extended
vocabulary, and coverage."""
import pytest
import torch

from seqkit.data.parallel import pad_sources, pad_targets
from seqkit.tasks.seq2seq import generate, label_smoothed_nll
from tests.helpers import seq2seq


def _toy_batch(B=6, V=14, S=7, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, S + 1, (B,), generator=g)
    lengths[0] = S
    src = [torch.randint(4, V, (int(k),), generator=g).tolist() for k in lengths]
    tgt = [torch.randint(4, V, (int(torch.randint(1, T, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(B)]
    return src, tgt, {**pad_sources(src), **pad_targets(tgt)}


@pytest.mark.parametrize("cell, kind, input_feed, backend, layers", [
    ("lstm", "general", True, "auto", 2), ("lstm", "additive", False, "custom", 2),
    ("gru", "dot", True, "custom", 2), ("rnn", "additive", True, "auto", 2),
    ("lstm", "general", True, "auto", 1)])  # the last: teacher forcing by InputFedLSTM
def test_step_by_step_decoding_matches_teacher_forcing(cell, kind, input_feed, backend, layers):
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12, num_layers=layers, cell=cell, attention=kind,
                    input_feed=input_feed, options={"backend": backend},
                    tie_embeddings=input_feed).eval()
    tgt_in = batch["tgt_in"].clamp(max=11)
    with torch.no_grad():
        forced = model.generator(model(batch["src"], batch["src_lengths"], tgt_in))  # (B, T, V)
        state, stepped = model.encode(batch["src"], batch["src_lengths"]), []
        for t in range(tgt_in.size(1)):
            log_probs, state = model.step(tgt_in[:, t], state)
            stepped.append(log_probs)
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, bias", [("general", True), ("dot", False)])
def test_fused_input_feeding_matches_the_step_loop(kind, bias):
    """Outputs and every parameter's gradient of InputFedLSTM's teacher forcing equal the
    autograd loop over ``advance`` (dropout off: the two draw their masks differently)."""
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12, attention=kind, dropout=0.0, options={"bias": bias})
    tgt_in, keep = batch["tgt_in"].clamp(max=11), batch["tgt_out"] != 0
    weights = torch.randn(int(keep.sum()), 12)

    def run(loop=False):
        model.zero_grad()
        state = model.encode(batch["src"], batch["src_lengths"])
        emb = model.tgt_embed(tgt_in)
        decoded = model.decoder.loop(emb, state) if loop else model.decoder(emb, state)
        log_probs = model.generator(decoded)[keep]
        (log_probs * weights).sum().backward()
        return (log_probs, decoded.attention,
                {n: p.grad.clone() for n, p in model.named_parameters()})
    assert model.decoder.fusable(tgt_in)
    fused = run()
    loop = run(loop=True)
    torch.testing.assert_close(fused[0], loop[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[1], loop[1], atol=1e-6, rtol=1e-5)
    assert fused[2].keys() == loop[2].keys()
    for name in loop[2]:
        torch.testing.assert_close(fused[2][name], loop[2][name], atol=1e-6, rtol=1e-5,
                                   msg=lambda m: f"{name}: {m}")
    # mixed precision: bfloat16 products, the same result to bfloat16's precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = run()
    torch.testing.assert_close(low[0].float(), loop[0], atol=0.05, rtol=0.05)
    for name in loop[2]:
        torch.testing.assert_close(low[2][name], loop[2][name], atol=0.02, rtol=0.1,
                                   msg=lambda m: f"{name}: {m}")


def test_output_layer_on_kept_positions_only():
    _, _, batch = _toy_batch()
    model = seq2seq(14, 12).eval()
    tgt_in = batch["tgt_in"].clamp(max=11)
    keep = batch["tgt_out"] != 0
    with torch.no_grad():
        decoded = model(batch["src"], batch["src_lengths"], tgt_in)
        full = model.generator(decoded)
        logits = model.generator.logits(decoded.vectors[keep])
        with torch.autocast("cpu", dtype=torch.bfloat16):  # rows padded to 64, then cut
            low = model.generator.logits(decoded.vectors[keep])
    assert not keep.all()  # the batch has padding to leave out
    torch.testing.assert_close(logits.log_softmax(-1), full[keep])
    assert low.shape == logits.shape and low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), logits, atol=0.05, rtol=0.05)


def test_model_overfits_one_batch_and_decodes_it():
    src, tgt, batch = _toy_batch(B=8, V=12, seed=1)
    model = seq2seq(12, 12, embed_dim=24, hidden_size=32, dropout=0.0, share_embeddings=True,
                    tie_embeddings=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(120):
        log_probs = model.generator(model(batch["src"], batch["src_lengths"], batch["tgt_in"]))
        loss = label_smoothed_nll(log_probs, batch["tgt_out"], 0, 0.0)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert generate(model, batch["src"], batch["src_lengths"]) == tgt
    assert generate(model, batch["src"], batch["src_lengths"], beam_size=3) == tgt


# -- pointer-generator and coverage ----------------------------------------------------------
V = 12  # toy vocabulary: ids 4..11 are words


def _copy_batch(B=5, S=7, T=5, n_ext=3, seed=0):
    """Sources with some extended ids (V .. V + n_ext - 1) and targets of known ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, S + 1, (B,), generator=g)
    lengths[0] = S
    src_ext = [torch.randint(4, V + n_ext, (int(k),), generator=g).tolist() for k in lengths]
    src = [[i if i < V else 1 for i in row] for row in src_ext]
    tgt = [torch.randint(4, V + n_ext, (T,), generator=g).tolist() for _ in range(B)]
    batch = {**pad_sources(src), **pad_targets(tgt)}
    batch["src_ext"] = pad_sources(src_ext)["src"]
    return batch


def _model(copy=True, coverage=True, cell="lstm"):
    torch.manual_seed(0)
    return seq2seq(V, V, cell=cell, attention="additive", share_embeddings=True, copy=copy,
                   coverage=coverage).eval()


def _forced(model, batch, n_ext=3):
    """log P over the extended vocabulary and the attention weights, teacher-forced."""
    decoded = model(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["src_ext"], n_ext)
    return model.generator(decoded, batch["src_ext"], n_ext), decoded.attention


def test_mixed_distribution_sums_to_one_over_the_extended_vocabulary():
    batch, model = _copy_batch(), _model()
    with torch.no_grad():
        log_probs, _ = _forced(model, batch)
    assert log_probs.shape[-1] == V + 3
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))


def test_with_p_gen_zero_the_output_is_the_attention_copy_distribution():
    batch, model = _copy_batch(), _model()
    with torch.no_grad():
        model.generator.gen.weight.zero_()
        model.generator.gen.bias.fill_(-1e4)  # sigmoid(-1e4) == 0 in float32
        log_probs, weights = _forced(model, batch)
    expected = torch.zeros(*weights.shape[:2], V + 3)
    for b in range(weights.size(0)):
        for i, word in enumerate(batch["src_ext"][b].tolist()):
            expected[b, :, word] += weights[b, :, i]
    torch.testing.assert_close(log_probs.exp(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_copy_and_coverage_decode_step_by_step_as_in_teacher_forcing(cell):
    batch, model = _copy_batch(), _model(cell=cell)
    with torch.no_grad():
        forced, weights = _forced(model, batch)
        state = model.encode(batch["src"], batch["src_lengths"], batch["src_ext"], 3)
        stepped = []
        for t in range(batch["tgt_in"].size(1)):
            torch.testing.assert_close(state["coverage"], weights[:, :t].sum(1))  # running sum
            log_probs, state = model.step(batch["tgt_in"][:, t], state)
            stepped.append(log_probs)
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)


def test_coverage_needs_additive_attention():
    with pytest.raises(ValueError, match="additive"):
        seq2seq(V, V, attention="general", coverage=True)
