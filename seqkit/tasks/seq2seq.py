"""Sequence to sequence (translation; summarization by YAML): label-smoothed NLL in training,
corpus BLEU (sacreBLEU) of decoded, detokenized output against the raw references.

Validation decodes greedily (``val_beam_size: 1``) or with a beam, and ``val/bleu`` picks the
checkpoint; test decodes with ``test_beam_size`` (default 5). The test writes
``translations.test.txt``, ``bleu.test.json`` (score and sacreBLEU signature) and attention
heatmaps of the first few test sentences to the run folder.
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
    uniform = -log_probs.mean(-1).masked_fill(~mask, 0.0).sum() / n
    return (1.0 - smoothing) * nll + smoothing * uniform, nll, n


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
             penalty: str = "gnmt", no_repeat_ngram: int = 0, min_len: int = 0) -> list[list[int]]:
    """The best output ids of each source (no bos, no eos), with seqkit.decoding.

    At most ``max_len_a`` · S + ``max_len_b`` tokens, S the batch's longest source. Beam size
    1 without n-gram blocking is greedy; the other options are ``beam_search``'s.
    """
    from ..decoding import beam_search, greedy

    state = model.encode(src, src_lengths)
    max_len = int(max_len_a * int(src_lengths.max()) + max_len_b)
    bos, eos = model.bos_index, model.eos_index
    if beam_size == 1 and not no_repeat_ngram:
        out = greedy(model.step, state, bos, eos, max_len, min_len)
        rows = [row[:n].tolist() for row, n in zip(out.tokens, out.lengths.tolist())]
    else:
        best = beam_search(model.step, state, bos, eos, beam_size, max_len, min_len=min_len,
                           length_penalty=length_penalty, penalty=penalty,
                           no_repeat_ngram=no_repeat_ngram)
        rows = [hyps[0].tokens for hyps in best]
    return [_strip(r, eos) for r in rows]


class Seq2SeqTask(Task):
    """Batches as ``TranslationData`` makes them: src, src_lengths, tgt_in, tgt_out, index,
    ref. ``decoding`` holds ``generate``'s options but the beam size."""

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/bleu",
                 artifacts: dict | None = None, pad_index: int = 0,
                 label_smoothing: float = 0.1, val_beam_size: int = 1, test_beam_size: int = 5,
                 decoding: dict | None = None, num_heatmaps: int = 4) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.pad_index, self.label_smoothing = pad_index, label_smoothing
        self.beam_sizes = {"val": val_beam_size, "test": test_beam_size}
        self.decoding, self.num_heatmaps = dict(decoding or {}), num_heatmaps
        self._subwords = None
        self._reset("val")
        self._reset("test")

    @property
    def subwords(self):
        """The tokenizer from the artifacts (set after construction, or from a checkpoint)."""
        if self._subwords is None:
            from ..data.subword import Subwords
            self._subwords = Subwords.from_state_dict(self.artifacts["subwords"])
        return self._subwords

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also store the decoding options, so that predict decodes as the test did."""
        checkpoint["seqkit"] = {**self.artifacts, "decoding": self.decoding}

    def _reset(self, stage: str) -> None:
        setattr(self, f"_{stage}_rows", [])  # (index, hypothesis, reference, src ids, hyp ids)
        setattr(self, f"_{stage}_sums", [0.0, 0, 0.0])  # nll sum, target tokens, decode seconds

    def forward(self, batch) -> Tensor:
        return self.model(batch["src"], batch["src_lengths"], batch["tgt_in"])

    def _loss(self, batch) -> tuple[Tensor, Tensor, int]:
        return label_smoothed_nll(self(batch), batch["tgt_out"], self.pad_index,
                                  self.label_smoothing)

    # -- training ---------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._epoch_tokens, self._epoch_start = 0, time.perf_counter()

    def training_step(self, batch, batch_idx):
        loss, nll, n = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/ppl", nll.exp(), batch_size=n)
        self._epoch_tokens += n
        return loss

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self._epoch_start
        self.log("train/tokens_per_s", self._epoch_tokens / max(seconds, 1e-9))

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, batch, stage: str) -> None:
        loss, nll, n = self._loss(batch)
        self.log(f"{stage}/loss", loss, batch_size=n)
        sums = getattr(self, f"_{stage}_sums")
        start = time.perf_counter()
        ids = generate(self.model, batch["src"], batch["src_lengths"], self.beam_sizes[stage],
                       **self.decoding)
        sums[:] = [sums[0] + float(nll) * n, sums[1] + n, sums[2] + time.perf_counter() - start]
        hyps = self.subwords.decode_tgt(ids)
        src = [row[:k].tolist() for row, k in zip(batch["src"], batch["src_lengths"].tolist())]
        getattr(self, f"_{stage}_rows").extend(
            zip(batch["index"].tolist(), hyps, batch["ref"], src, ids))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def _scores(self, stage: str):
        """Log BLEU, perplexity and decoding speed over all processes; return the rows in
        corpus order and the sacreBLEU result and signature."""
        from sacrebleu.metrics import BLEU

        rows, (nll, tokens, seconds) = gather_rows(getattr(self, f"_{stage}_rows"),
                                                   getattr(self, f"_{stage}_sums"))
        rows = sorted(rows, key=lambda r: r[0])
        self._reset(stage)
        bleu = BLEU()
        score = bleu.corpus_score([r[1] for r in rows], [[r[2] for r in rows]])
        self.log(f"{stage}/bleu", score.score, prog_bar=stage == "val")
        self.log_dict({f"{stage}/ppl": math.exp(min(nll / max(tokens, 1), 50.0)),
                       f"{stage}/sents_per_s": len(rows) / max(seconds, 1e-9)})
        return rows, score, str(bleu.get_signature())

    def on_validation_epoch_end(self) -> None:
        self._scores("val")

    def on_test_epoch_end(self) -> None:
        rows, score, signature = self._scores("test")
        beam = self.beam_sizes["test"]
        log.info("test %s (beam %d), sacreBLEU signature %s", score, beam, signature)
        print(f"test: {score} | {signature} | beam {beam}")
        root = self.trainer.default_root_dir
        if self.trainer.is_global_zero and root:
            self._write_results(Path(root), rows, score, signature)

    def _write_results(self, root: Path, rows: list, score, signature: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "translations.test.txt").write_text("".join(r[1] + "\n" for r in rows),
                                                     encoding="utf-8")
        record = {"bleu": score.score, "signature": signature, "verbose": str(score),
                  "beam_size": self.beam_sizes["test"], **self.decoding}
        (root / "bleu.test.json").write_text(json.dumps(record, indent=2) + "\n")
        self._heatmaps(rows[:self.num_heatmaps], root / "plots")

    @torch.no_grad()
    def _heatmaps(self, rows: list, folder: Path) -> None:
        """Attention of the model over each source while it produces its own hypothesis."""
        from ..data.parallel import pad_sources, pad_targets
        from ..plots import attention_heatmap

        model, eos = self.model, self.model.eos_index
        for index, _, _, src, hyp in rows:
            batch = {**pad_sources([src]), **pad_targets([hyp])}
            _, weights = model.teacher_forced(*(batch[k].to(self.device) for k in
                                                ("src", "src_lengths", "tgt_in")))
            attention_heatmap(weights[0].cpu().numpy(), self.subwords.src_pieces(src),
                              self.subwords.tgt_pieces(hyp + [eos]),
                              folder / f"attention_{index}.png")
