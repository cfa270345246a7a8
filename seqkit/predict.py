"""Use a trained checkpoint on raw input, with nothing else from the training run: the
functions behind ``seqkit predict`` and ``seqkit generate`` (``seqkit.cli``) and
``seqkit.load`` (``seqkit.inference``)."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as checkpoint_file
from .layers import length_mask


def load(checkpoint: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The model (eval mode) and the artifacts (vocabulary, labels, ...) of a checkpoint.
    Safe on a file from anyone: see ``seqkit.checkpoint``."""
    ckpt = checkpoint_file.read(checkpoint, map_location=device)
    artifacts = checkpoint_file.artifacts(ckpt, checkpoint)
    model = checkpoint_file.build_model(artifacts.get("model"), ckpt["state_dict"], checkpoint)
    return model.to(device).eval(), artifacts


@torch.no_grad()
def classify(model: nn.Module, artifacts: dict, texts: list[str]) -> list[dict]:
    """Label and class probabilities of each text; a blank text gets label None."""
    from .data.classification import encode_texts
    from .data.text import splitter_of
    from .data.vocab import Vocab

    rows = [{"text": t, "label": None, "probs": {}} for t in texts]
    kept = [row for row in rows if row["text"].strip()]
    if not kept:
        return rows
    vocab = Vocab.from_state_dict(artifacts["vocab"])
    batch = encode_texts([row["text"] for row in kept], vocab, artifacts.get("lower", True),
                         splitter_of(artifacts))
    probs = model(batch["tokens"], batch["lengths"]).softmax(-1)
    labels = artifacts["labels"]
    for row, p in zip(kept, probs):
        row["label"] = labels[int(p.argmax())]
        row["probs"] = {label: round(float(q), 4) for label, q in zip(labels, p)}
    return rows


def tokenize(text: str, tokenizer: str = "simple") -> list[str]:
    """``whitespace`` splits on spaces; ``simple`` also splits punctuation off words."""
    if tokenizer == "whitespace":
        return text.split()
    # words keep inner - ' . (state-of-the-art, don't, 3.5) and an abbreviation its final dot
    return re.findall(r"\w+(?:[-'.]\w+)*(?:(?<=\.\w)\.)?|[^\w\s]", text)


@torch.no_grad()
def tag(model: nn.Module, artifacts: dict, texts: list[str],
        tokenizer: str = "simple") -> list[dict]:
    """Tokens, tags and entity spans (type, start, end: token offsets, end exclusive)."""
    from .data.ner import SentenceFeatures
    from .metrics.spans import entities

    features = SentenceFeatures.from_state_dict(artifacts["features"])
    sentences = [tokenize(t, tokenizer) for t in texts]
    batch = SentenceFeatures.pad([features.encode(s) for s in sentences if s] or
                                     [features.encode(["."])])
    mask = length_mask(batch["lengths"], batch["words"].size(1))
    paths = iter(model.decode(model(batch["words"], batch["cases"], batch["chars"],
                                    batch["lengths"]), mask))
    rows = []
    for text, tokens in zip(texts, sentences):
        tags = features.tags.decode(next(paths)) if tokens else []
        spans = [{"type": k, "start": a, "end": b, "text": " ".join(tokens[a:b])}
                 for k, a, b in entities(tags, artifacts["scheme"])]
        rows.append({"text": text, "tokens": tokens, "tags": tags, "entities": spans})
    return rows


def autocast(precision: str, device: torch.device):
    """The context a Lightning ``precision`` runs the model in: autocast to bfloat16 or
    float16 for "bf16-mixed" / "16-mixed", nothing for the rest ("32-true", ...)."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


@torch.no_grad()
def transduce(model: nn.Module, artifacts: dict, texts: list[str],
              beam_size: int | None = None, batch_size: int | None = None,
              precision: str | None = None, **decoding) -> list[str]:
    """Translations or summaries of ``texts``, detokenized (an empty text gives an empty line).

    The texts are decoded shortest first, ``batch_size`` at a time (None: all at once), so
    that a batch holds sources of similar lengths; the outputs come in the texts' order.
    ``precision``: as Lightning's (None: the one the model was trained at, as its test
    decoded; "bf16-mixed" runs the products in bfloat16, several times faster on CPUs with
    AMX).
    ``decoding``: options of ``seqkit.tasks.seq2seq.generate`` (max_len_a, length_penalty,
    no_repeat_ngram, stop, ...) over those the model was tested with, stored in the
    checkpoint; ``beam_size`` None: the test's."""
    from .data.classification import pad
    from .data.parallel import pad_sources
    from .data.subword import PAD, UNK
    from .data.words import tokenizer_from_artifacts
    from .tasks.seq2seq import generate

    tokenizer = tokenizer_from_artifacts(artifacts)
    copy = getattr(model, "copy", False)  # the source's unknown words can be copied
    # a summarizer reads the start of a long source; a copying model its unknown words too
    extended = [tokenizer.extend(t, artifacts.get("max_src_len")) for t in texts]
    ids = [tokenizer.known(e) or [UNK] for e, _ in extended]  # every source needs a position
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths pad less
    device = next(model.parameters()).device
    precision = precision or artifacts.get("precision", "32-true")
    beam_size = beam_size or artifacts.get("beam_size", 5)
    options = {**artifacts.get("decoding", {}), **decoding}
    outputs = [""] * len(texts)
    size = batch_size or max(len(order), 1)
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        inputs = {k: v.to(device) for k, v in pad_sources([ids[i] for i in rows]).items()}
        oovs = None
        if copy:
            oovs = [extended[i][1] for i in rows]
            src_ext = pad([extended[i][0] or [UNK] for i in rows], PAD)["tokens"]
            inputs.update(src_ext=src_ext.to(device), n_ext=max(map(len, oovs)))
        with autocast(precision, device):
            out = generate(model, beam_size=beam_size, **inputs, **options)
        for i, hyp in zip(rows, tokenizer.decode_tgt(out, oovs)):
            outputs[i] = hyp if texts[i].strip() else ""
    return outputs
