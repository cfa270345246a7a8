"""Polyphonic music modelling: Bernoulli NLL per frame, truncated BPTT, samples to MIDI.

``val/nll`` and ``test/nll`` are nats per predicted frame, summed over the 88 notes and
averaged over every frame of the split from the second on (the first frame of a piece has
nothing before it; Bai et al. 2018 score frames 2..T the same way). ``acc`` is the frame-level
accuracy of Bay et al. (2009) used by Boulanger-Lewandowski et al. (2012): TP / (TP + FP + FN)
over all those frames, a note predicted on where p > 0.5. Training also learns the first
frame from silence, so that sampling can start from nothing.

Training runs truncated BPTT: each batch is cut into chunks of ``tbptt`` frames, the state
carried from one chunk to the next with its gradient cut, and the optimizer steps after every
chunk (``tbptt: null``: one chunk, full BPTT). The test writes ``samples/`` to the run folder:
MIDI files and piano-roll plots of pieces sampled from scratch and continuing a test primer.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layers import length_mask
from .base import Task, detach


def bernoulli_nll(logits: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(summed NLL over notes and the frames ``mask`` (B, T) keeps, number of those frames)."""
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
    return nll.masked_fill(~mask, 0.0).sum(), mask.sum()


class MusicTask(Task):
    """Batches: ``rolls`` (B, T, 88), ``lengths`` (B,)."""

    def __init__(self, model, optimizer, scheduler=None, monitor: str = "val/nll",
                 artifacts: dict | None = None, tbptt: int | None = 100,
                 gradient_clip: float | None = 1.0, num_samples: int = 2,
                 sample_frames: int = 64, temperature: float = 1.0) -> None:
        super().__init__(model, optimizer, scheduler, monitor, artifacts)
        if tbptt is not None and tbptt < 1:
            raise ValueError(f"tbptt must be a positive number of frames or null, got {tbptt}")
        self.automatic_optimization = False  # one optimizer step per chunk
        self.tbptt, self.gradient_clip = tbptt, gradient_clip
        self.num_samples, self.sample_frames = num_samples, sample_frames
        self.temperature = temperature
        self._sums: dict[str, Tensor] = {}

    def configure_optimizers(self):
        config = super().configure_optimizers()
        if isinstance(config, dict):  # manual optimization: Lightning warns of a monitor
            config["lr_scheduler"].pop("monitor", None)
        return config

    def training_step(self, batch, batch_idx):
        rolls, lengths = batch["rolls"], batch["lengths"]
        # under DDP every rank must step (and all-reduce) as often: pad to the longest batch
        T = int(self.trainer.strategy.reduce(torch.tensor(rolls.size(1), device=rolls.device),
                                             reduce_op="max"))
        rolls = F.pad(rolls, (0, 0, 0, T - rolls.size(1)))
        inputs, mask = self.model.shift(rolls), length_mask(lengths, T, rolls.device)
        optimizer = self.optimizers()
        step = self.tbptt or T
        state, total, frames = None, 0.0, 0
        for start in range(0, T, step):
            chunk = slice(start, start + step)
            logits, state = self.model(inputs[:, chunk], state)
            nll, n = bernoulli_nll(logits, rolls[:, chunk], mask[:, chunk])
            loss = nll / n.clamp_min(1)  # a chunk of padding only: a zero loss, still a step
            optimizer.zero_grad()
            self.manual_backward(loss)
            if self.gradient_clip:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip)
            optimizer.step()
            state = detach(state)
            total, frames = total + nll.item(), frames + int(n)
        self.log("train/nll", total / max(frames, 1), prog_bar=True, batch_size=max(frames, 1))

    def _evaluate(self, batch, stage: str) -> None:
        rolls, lengths = batch["rolls"], batch["lengths"]
        logits, _ = self.model(self.model.shift(rolls))
        mask = length_mask(lengths, rolls.size(1), rolls.device)
        mask[:, 0] = False  # scored from the second frame on
        nll, n = bernoulli_nll(logits, rolls, mask)
        predicted, truth = (logits > 0) & mask[..., None], (rolls > 0.5) & mask[..., None]
        counts = torch.stack([nll, n.float(), (predicted & truth).sum().float(),
                              (predicted & ~truth).sum().float(),
                              (~predicted & truth).sum().float()])
        self._sums[stage] = self._sums.get(stage, 0) + counts

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def _log_scores(self, stage: str) -> None:
        """Ratios of sums over every process (the distributed sampler's few repeated pieces,
        which even out the ranks, count twice)."""
        sums = self.trainer.strategy.reduce(self._sums.pop(stage), reduce_op="sum")
        nll, n, tp, fp, fn = sums.tolist()
        self.log_dict({f"{stage}/nll": nll / n, f"{stage}/acc": tp / max(tp + fp + fn, 1.0)},
                      prog_bar=stage == "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")
        folder = self.run_folder()
        if folder and self.num_samples:
            write_samples(self.model, self.artifacts, folder / "samples", self.num_samples,
                          self.sample_frames, self.temperature, seed=0)


def write_samples(model, artifacts: dict, folder: Path, num_samples: int, num_frames: int,
                  temperature: float = 1.0, seed: int = 0, primer: Tensor | None = None,
                  wav: bool = False) -> list[Path]:
    """Sample pieces from scratch and continuing a primer (``primer``, else the one stored
    in the artifacts: the start of a test piece); write each as MIDI and as a piano-roll PNG,
    and with ``wav`` as audio. Returns the MIDI (and WAV) paths."""
    from ..data.music import midi_to_wav, roll_to_midi
    from ..plots import piano_roll

    if primer is None and artifacts.get("primer"):
        primer = torch.tensor(artifacts["primer"], dtype=torch.float32)
    generator = torch.Generator(device=model.out.weight.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    paths = []
    for name, start in (("scratch", None), ("primed", primer)):
        if name == "primed" and start is None:
            continue
        rolls = model.sample(num_frames, start, num_samples, temperature, generator).cpu()
        for i, roll in enumerate(rolls):
            stem = folder / f"{name}_{i}"
            paths.append(roll_to_midi(roll.numpy(), stem.with_suffix(".mid"), artifacts["fs"]))
            if wav:
                paths.append(midi_to_wav(paths[-1]))
            piano_roll(roll.numpy(), stem.with_suffix(".png"),
                       primer_frames=0 if start is None else len(start))
    model.train(was_training)
    return paths
