"""The attentional encoder-decoder: step-by-step decoding equals teacher forcing, the fused
input-fed decoder equals its step loop, the output layer on kept positions, one batch
overfitted and decoded."""
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
