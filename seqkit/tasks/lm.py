"""Language modelling: cross-entropy per token over a continuous stream, truncated BPTT.

Batches come in stream order (``seqkit.data.lm``): row i of a batch continues row i of the
one before, so the recurrent state is carried from batch to batch, its gradient cut between
them (truncated BPTT), and reset at the start of every epoch and evaluation. ``loss`` is the
mean cross-entropy in nats per predicted token, ``ppl`` = exp(loss) and, for characters,
``bpc`` = loss / ln 2; evaluation sums over every token of the split (on every process).
The test writes ``samples.txt`` to the run folder.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Task, detach


def token_nll(logits, targets):
    """Summed cross-entropy (nats) of ``targets`` (B, T) under ``logits`` (B, T, V)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")


class LMTask(Task):
    """Batches: ``inputs`` (B, T) and ``targets`` (B, T), the inputs shifted by one token."""

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/loss",
                 artifacts: dict | None = None, sample_prime: str = "\n",
                 sample_length: int = 500, temperature: float = 0.8) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        self.sample_prime, self.sample_length = sample_prime, sample_length
        self.temperature = temperature
        self._state: dict[str, object] = {}
        self._sums: dict[str, torch.Tensor] = {}

    def _forward(self, batch, stage: str):
        logits, state = self.model(batch["inputs"], self._state.get(stage))
        self._state[stage] = detach(state)
        return token_nll(logits, batch["targets"])

    def on_train_epoch_start(self) -> None:
        self._state.pop("train", None)

    def training_step(self, batch, batch_idx):
        n = batch["targets"].numel()
        loss = self._forward(batch, "train") / n
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def _evaluate(self, batch, stage: str) -> None:
        nll = self._forward(batch, stage)
        counts = torch.stack([nll, torch.tensor(float(batch["targets"].numel()),
                                                device=nll.device)])
        self._sums[stage] = self._sums.get(stage, 0) + counts

    def on_validation_epoch_start(self) -> None:
        self._state.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._state.pop("test", None)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def _log_scores(self, stage: str) -> None:
        nll, n = self.trainer.strategy.reduce(self._sums.pop(stage), reduce_op="sum").tolist()
        loss = nll / n
        scores = {f"{stage}/loss": loss, f"{stage}/ppl": math.exp(min(loss, 50.0))}
        if self.artifacts.get("level") == "char":
            scores[f"{stage}/bpc"] = loss / math.log(2)
        self.log_dict(scores, prog_bar=stage == "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")
        folder = self.run_folder()
        if folder and self.sample_length:
            text = generate_text(self.model, self.artifacts, self.sample_prime,
                                 self.sample_length, temperature=self.temperature, seed=0)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "samples.txt").write_text(text[0] + "\n", encoding="utf-8")


def generate_text(model, artifacts: dict, prime: str, length: int, num_samples: int = 1,
                  stop: str | None = None, seed: int | None = None, **options) -> list[str]:
    """``num_samples`` texts: the prime and what the model writes after it (up to ``length``
    tokens, ending at the token ``stop`` if given). ``options``: temperature, top_k, top_p.
    A prime of words is split as the training text was; an empty prime starts from a
    newline."""
    from ..data.lm import detokenize, tokens
    from ..data.text import splitter_of
    from ..data.vocab import Vocab

    vocab, level = Vocab.from_state_dict(artifacts["vocab"]), artifacts["level"]
    tokenizer = splitter_of(artifacts)
    pieces = tokens(prime, level, tokenizer) if prime.strip() or level == "char" else []
    if level == "word" and pieces and not prime.endswith("\n"):
        pieces = pieces[:-1]  # the prime's words continue: no <eos> after them
    pieces = pieces or tokens("\n", level)
    unseen = sorted({p for p in pieces if p not in vocab}) if level == "char" else []
    if unseen:  # a word model reads unknown words as <unk>; a character model has no excuse
        raise ValueError(f"the prime has characters the model never saw in training: "
                         f"{', '.join(map(repr, unseen))}")
    if stop is not None and stop not in vocab:
        raise ValueError(f"stop token {stop!r} is not in the model's vocabulary")
    device = model.out.weight.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(torch.tensor(vocab.encode(pieces), device=device), length,
                         stop=None if stop is None else vocab[stop], num_samples=num_samples,
                         generator=generator, never=[vocab.unk_index], **options)
    model.train(was_training)
    texts = []
    for row in out.tolist():
        if stop is not None and vocab[stop] in row:
            row = row[:row.index(vocab[stop]) + 1]
        texts.append(prime + (" " if level == "word" and prime and not prime[-1].isspace()
                              else "") + detokenize(vocab.decode(row), level,
                                                         marked=not isinstance(tokenizer, str)))
    return texts
