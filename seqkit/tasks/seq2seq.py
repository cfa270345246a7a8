"""Sequence to sequence, translation and summarization: label-smoothed NLL in training (plus
the coverage loss when the model has coverage), and a corpus metric of the decoded,
detokenized output against the raw references: sacreBLEU (``metric: bleu``) or ROUGE-1/2/L
under the multi-reference protocol (``metric: rouge``; ``rouge_stemmer`` turns on Porter
stemming, off as in SciTLDR's benchmark).

Validation decodes greedily (``val_beam_size: 1``) or with a beam, and the monitored metric
picks the checkpoint; test decodes with ``test_beam_size`` (default 5). The test writes
``outputs.test.txt``, ``scores.test.json`` (the score, with sacreBLEU's signature or the
Lead-1 and oracle baselines scored alike) and attention heatmaps of the first few test
examples to the run folder.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from .base import Task

log = logging.getLogger(__name__)


def label_smoothed_nll(log_probs: Tensor, target: Tensor, pad_index: int,
                       smoothing: float) -> tuple[Tensor, Tensor, int]:
    """log_probs (B, T, V), target (B, T) -> (loss, nll, n) over the n non-pad targets.

    loss = (1 - ε) · nll + ε · mean_v(-log p(v)): the cross-entropy against a target
    distribution with ε spread uniformly over the vocabulary (Szegedy et al. 2016). ``nll``
    (per token, without smoothing) is what perplexity exponentiates.
    """
    mask = target != pad_index
    n = int(mask.sum())
    nll = -log_probs.gather(-1, target[..., None]).squeeze(-1)  # (B, T)
    nll = nll.masked_fill(~mask, 0.0).sum() / n
    if not smoothing:
        return nll, nll, n
    # sum, then / V on the (B, T) result: mean(-1)'s backward divides a whole (B, T, V) tensor
    uniform = -log_probs.sum(-1).masked_fill(~mask, 0.0).sum() / (n * log_probs.size(-1))
    return (1.0 - smoothing) * nll + smoothing * uniform, nll, n


class _SmoothedCrossEntropy(torch.autograd.Function):
    """label_smoothed_nll from logits (N, V) of N real targets in one function: the forward
    keeps only the log-partition per row, the backward writes the gradient
    (softmax - (1 - ε) · onehot - ε / V) / N in place, instead of autograd's chain through
    log_softmax, gather and sum, which passes over the (N, V) tensor about twice as often."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, smoothing: float):
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))
        with torch.autocast("cpu", enabled=False):  # CPU autocast doubles logsumexp's time
            lse = torch.logsumexp(x, -1)
        nll = lse - x.gather(1, target[:, None]).squeeze(1)
        loss = (1.0 - smoothing) * nll + smoothing * (lse - x.mean(-1))
        ctx.save_for_backward(logits, target)
        ctx.smoothing = smoothing
        ctx.mark_non_differentiable(nll)
        return loss.mean(), nll.mean()

    @staticmethod
    def backward(ctx, grad, _):
        logits, target = ctx.saved_tensors
        (N, V), s = logits.shape, ctx.smoothing
        scale = grad / N
        # in the logits' dtype: bfloat16 under mixed precision, like the products it feeds
        d = logits.softmax(-1).mul_(scale).sub_(scale * s / V)
        d[torch.arange(N, device=d.device), target] -= scale * (1.0 - s)
        return d, None, None


def smoothed_cross_entropy(logits: Tensor, target: Tensor,
                           smoothing: float) -> tuple[Tensor, Tensor, int]:
    """``label_smoothed_nll`` of log_softmax(logits), for logits (N, V) of N real (not pad)
    targets (N,): (loss, nll, N), in at least float32 (bfloat16 logits too; their gradient
    comes in bfloat16)."""
    loss, nll = _SmoothedCrossEntropy.apply(logits, target, float(smoothing))
    return loss, nll, len(target)


def coverage_loss(weights: Tensor, mask: Tensor) -> Tensor:
    """See et al.'s coverage loss per target token: Σ_t Σ_i min(α_ti, cov_ti) over the
    targets ``mask`` (B, T) keeps, / their number; weights α (B, T, S), cov_t = Σ_{t'<t} α_t'.
    """
    coverage = weights.cumsum(1) - weights
    per_step = torch.minimum(weights, coverage).sum(-1)
    return per_step.masked_fill(~mask, 0.0).sum() / mask.sum()


def gather_rows(rows: list, sums: list) -> tuple[list, list]:
    """Under DDP, every process's decoded rows and counters, so that corpus BLEU is the whole
    split's: rows keyed by their corpus index (the distributed sampler repeats a few examples to
    even out the ranks; each counts once), the NLL and token counts summed, the decoding time
    the slowest rank's (the ranks decode in parallel). One process: returned as they are."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows, sums
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (rows, sums))
    unique = {row[0]: row for part, _ in parts for row in part}
    totals = [sum(s[0] for _, s in parts), sum(s[1] for _, s in parts),
              max(s[2] for _, s in parts)]
    return list(unique.values()), totals


def _strip(tokens: list[int], eos: int) -> list[int]:
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


@torch.no_grad()
def generate(model, src: Tensor, src_lengths: Tensor, beam_size: int = 1,
             max_len_a: float = 1.5, max_len_b: int = 10, length_penalty: float = 0.0,
             penalty: str = "gnmt", no_repeat_ngram: int = 0, min_len: int = 0,
             stop: str = "exact", src_ext: Tensor | None = None,
             n_ext: int = 0) -> list[list[int]]:
    """The best output ids of each source (no bos, no eos), with seqkit.decoding.

    At most ``max_len_a`` · S + ``max_len_b`` tokens, S the batch's longest source (a
    summarizer sets a = 0 and b = its longest summary). Beam size 1 without n-gram blocking is
    greedy; the other options are ``beam_search``'s. ``src_ext``, ``n_ext``: a copying
    model's extended source (ids past the vocabulary are copied source words).
    """
    from ..decoding import beam_search, greedy

    state = model.encode(src, src_lengths, src_ext, n_ext)
    max_len = int(max_len_a * int(src_lengths.max()) + max_len_b)
    bos, eos = model.bos_index, model.eos_index
    if beam_size == 1 and not no_repeat_ngram:
        out = greedy(model.step, state, bos, eos, max_len, min_len)
        rows = [row[:n].tolist() for row, n in zip(out.tokens, out.lengths.tolist())]
    else:
        best = beam_search(model.step, state, bos, eos, beam_size, max_len, min_len=min_len,
                           length_penalty=length_penalty, penalty=penalty,
                           no_repeat_ngram=no_repeat_ngram, stop=stop,
                           static=getattr(model, "static_state", ()))
        rows = [hyps[0].tokens for hyps in best]
    return [_strip(r, eos) for r in rows]


SOURCE_KEYS = ("src", "src_lengths", "src_ext", "n_ext")


def sources(batch: dict) -> dict:
    """The model's source inputs in a batch (with copy: the extended source)."""
    return {k: batch[k] for k in SOURCE_KEYS if k in batch}


class Seq2SeqTask(Task):
    """Batches as ``TranslationData`` and ``SummarizationData`` make them: src, src_lengths,
    tgt_in, tgt_out, index, ref (a string, or a list of references), and for a copying model
    src_ext, n_ext, oovs. ``decoding`` holds ``generate``'s options but the beam size."""

    METRICS = ("bleu", "rouge")

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/bleu",
                 artifacts: dict | None = None, label_smoothing: float = 0.1, coverage_weight: float = 0.0,
                 metric: str = "bleu", val_beam_size: int = 1, test_beam_size: int = 5,
                 decoding: dict | None = None, num_heatmaps: int = 4,
                 rouge_stemmer: bool = False) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if metric not in self.METRICS:
            raise ValueError(f"metric must be one of {self.METRICS}, got {metric!r}")
        if label_smoothing and model.copy:
            raise ValueError("label_smoothing spreads mass over a vocabulary; a copying model's "
                             "extended vocabulary differs per batch: set label_smoothing=0")
        if coverage_weight and not model.coverage:
            raise ValueError("coverage_weight needs a model with coverage (model.decoder.coverage: "
                             "a seqkit.models.seq2seq.Coverage partial)")
        self.pad_index, self.label_smoothing = model.pad_index, label_smoothing
        self.coverage_weight, self.metric = coverage_weight, metric
        self.rouge_stemmer = rouge_stemmer
        self.beam_sizes = {"val": val_beam_size, "test": test_beam_size}
        self.decoding, self.num_heatmaps = dict(decoding or {}), num_heatmaps
        self._tokenizer = None
        self._reset("val")
        self._reset("test")

    @property
    def tokenizer(self):
        """Subwords or Words, from the artifacts (set after construction, or a checkpoint)."""
        if self._tokenizer is None:
            from ..data.words import tokenizer_from_artifacts
            self._tokenizer = tokenizer_from_artifacts(self.artifacts)
        return self._tokenizer

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also store the decoding options and beam, so that predict decodes as the test did."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["seqkit"].update(decoding=self.decoding, beam_size=self.beam_sizes["test"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._tokenizer = None  # the checkpoint's, not a cached one

    def _reset(self, stage: str) -> None:
        # (index, hypothesis, reference(s), source ids, hypothesis ids, the source's oovs)
        setattr(self, f"_{stage}_rows", [])
        setattr(self, f"_{stage}_sums", [0.0, 0, 0.0])  # nll sum, target tokens, decode seconds

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule  # None: batches given directly (seqkit evaluate)
        copies = getattr(data, "copy", False)
        if data is not None and copies != self.model.copy:
            raise ValueError(f"data.copy={str(copies).lower()} but the model's generator "
                             f"{'copies' if self.model.copy else 'does not copy'}: a copying "
                             f"model (CopyGenerator) needs data.copy=true, any other false")

    def forward(self, batch):
        return self.model(tgt_in=batch["tgt_in"], **sources(batch))

    def _loss(self, batch) -> tuple[Tensor, Tensor, int]:
        target = batch["tgt_out"]
        real = target != self.pad_index
        decoded = self(batch)
        if self.model.copy:  # its distribution mixes in each sentence's source
            log_probs = self.model.generator(decoded, batch["src_ext"], batch["n_ext"])
            loss, nll, n = label_smoothed_nll(log_probs, target, self.pad_index,
                                              self.label_smoothing)
        else:  # the output layer on real tokens only, not on padding
            logits = self.model.generator.logits(decoded.vectors[real])
            loss, nll, n = smoothed_cross_entropy(logits, target[real], self.label_smoothing)
        if self.coverage_weight:
            loss = loss + self.coverage_weight * coverage_loss(decoded.attention, real)
        return loss, nll, n

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        loss, nll, n = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/ppl", nll.exp(), batch_size=n)
        return loss

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, batch, stage: str) -> None:
        loss, nll, n = self._loss(batch)
        self.log(f"{stage}/loss", loss, batch_size=n)
        sums = getattr(self, f"_{stage}_sums")
        start = time.perf_counter()
        ids = generate(self.model, beam_size=self.beam_sizes[stage], **sources(batch),
                       **self.decoding)
        sums[:] = [sums[0] + float(nll) * n, sums[1] + n, sums[2] + time.perf_counter() - start]
        oovs = batch.get("oovs", [[]] * len(ids))
        hyps = self.tokenizer.decode_tgt(ids, oovs)
        src = [row[:k].tolist() for row, k in
               zip(batch.get("src_ext", batch["src"]), batch["src_lengths"].tolist())]
        getattr(self, f"_{stage}_rows").extend(
            zip(batch["index"].tolist(), hyps, batch["ref"], src, ids, oovs))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def _scores(self, stage: str) -> tuple[list, dict]:
        """Log the metric, perplexity and decoding speed over all processes; return the rows
        in corpus order and a record of the scores for the run folder."""
        rows, (nll, tokens, seconds) = gather_rows(getattr(self, f"_{stage}_rows"),
                                                   getattr(self, f"_{stage}_sums"))
        rows = sorted(rows, key=lambda r: r[0])
        self._reset(stage)
        hyps, refs = [r[1] for r in rows], [r[2] for r in rows]
        if self.metric == "bleu":
            from sacrebleu.metrics import BLEU

            bleu = BLEU()
            score = bleu.corpus_score(hyps, [refs])
            scores = {"bleu": score.score}
            record = {**scores, "signature": str(bleu.get_signature()), "verbose": str(score)}
        else:
            from ..metrics.rouge import MultiRefRouge

            scores = MultiRefRouge(self.rouge_stemmer).corpus(hyps, refs)
            record = {**scores, "rouge_stemmer": self.rouge_stemmer}
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, prog_bar=stage == "val")
        self.log_dict({f"{stage}/ppl": math.exp(min(nll / max(tokens, 1), 50.0)),
                       f"{stage}/sents_per_s": len(rows) / max(seconds, 1e-9)})
        return rows, record

    def on_validation_epoch_end(self) -> None:
        self._scores("val")

    def on_test_epoch_end(self) -> None:
        rows, record = self._scores("test")
        record.update(beam_size=self.beam_sizes["test"], **self.decoding)
        if self.metric == "rouge":
            record.update(self._baselines())
        log.info("test %s", record)
        print(f"test: {json.dumps(record)}")
        folder = self.run_folder()
        if folder:
            self._write_results(folder, rows, record)

    def _baselines(self) -> dict:
        """Lead-1 and the extractive oracle on the test documents, scored like the model
        (logged as test/lead1_rouge1, ...)."""
        from ..metrics.rouge import MultiRefRouge

        docs = getattr(self.trainer.datamodule, "documents", {}).get("test")
        if not docs:
            return {}
        scores = MultiRefRouge(self.rouge_stemmer).baselines([d.sentences for d in docs],
                                           [d.summaries for d in docs])
        flat = {f"{name}_{k}": v for name, s in scores.items() for k, v in s.items()}
        self.log_dict({f"test/{k}": v for k, v in flat.items()})
        return flat

    def _write_results(self, root: Path, rows: list, record: dict) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "outputs.test.txt").write_text("".join(r[1] + "\n" for r in rows),
                                               encoding="utf-8")
        (root / "scores.test.json").write_text(json.dumps(record, indent=2) + "\n")
        self._heatmaps(rows[:self.num_heatmaps], root / "plots")

    @torch.no_grad()
    def _heatmaps(self, rows: list, folder: Path) -> None:
        """Attention of the model over each source while it produces its own hypothesis."""
        from ..data.parallel import pad_targets
        from ..plots import attention_heatmap

        model, eos, words = self.model, self.model.eos_index, self.tokenizer
        for index, _, _, src, hyp, oovs in rows:
            src_ext = torch.tensor([src], device=self.device)  # extended ids when copying
            tgt_in = pad_targets([hyp])["tgt_in"].to(self.device)
            weights = model(model.known(src_ext), torch.tensor([len(src)]), tgt_in, src_ext,
                            len(oovs)).attention
            attention_heatmap(weights[0].cpu().numpy(), words.src_pieces(src, oovs),
                              words.tgt_pieces(hyp + [eos], oovs),
                              folder / f"attention_{index}.png")
