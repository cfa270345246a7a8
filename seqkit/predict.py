"""Use a trained checkpoint on raw input, with nothing else from the training run.

    python -m seqkit.predict outputs/sentiment/<run>/checkpoints/best-*.ckpt "a gripping film"
    python -m seqkit.predict CKPT --file reviews.txt      # one text per line; '-' reads stdin
    python -m seqkit.predict NER_CKPT "U.N. official Ekeus heads for Baghdad ." --format conll
    python -m seqkit.predict MT_CKPT --file test.de --beam 5 > test.hyp.en
    python -m seqkit.predict SUM_CKPT --file abstracts.txt   # one summary per line
    python -m seqkit.predict MUSIC_CKPT --out samples/ --samples 4 --frames 128 --primer a.mid
    python -m seqkit.predict MUSIC_CKPT --out samples/ --wav     # and listen to them
    python -m seqkit.predict LM_CKPT --prime "ROMEO:" --length 300 --temperature 0.8 --top-p 0.95
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from .layers import length_mask


def load(checkpoint: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The model (eval mode) and the artifacts (vocabulary, labels, ...) of a checkpoint."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if "seqkit" not in ckpt:
        raise ValueError(f"{path} is not a seqkit checkpoint (no 'seqkit' artifacts in it)")
    artifacts = ckpt["seqkit"]
    model = instantiate(artifacts["model"])
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()
             if k.startswith("model.")}
    model.load_state_dict(state)
    return model.to(device).eval(), artifacts


@torch.no_grad()
def classify(model: nn.Module, artifacts: dict, texts: list[str]) -> list[dict]:
    """Label and class probabilities of each text."""
    from .data.classification import encode_texts
    from .data.vocab import Vocab

    vocab = Vocab.from_state_dict(artifacts["vocab"])
    batch = encode_texts(texts, vocab, artifacts.get("lower", True))
    probs = model(batch["tokens"], batch["lengths"]).softmax(-1)
    labels = artifacts["labels"]
    return [{"text": t, "label": labels[int(p.argmax())],
             "probs": {label: round(float(q), 4) for label, q in zip(labels, p)}}
            for t, p in zip(texts, probs)]


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


@torch.no_grad()
def transduce(model: nn.Module, artifacts: dict, texts: list[str],
              beam_size: int | None = None, **decoding) -> list[str]:
    """Translations or summaries of ``texts``, detokenized (an empty text gives an empty line).

    ``decoding``: options of ``seqkit.tasks.seq2seq.generate`` (max_len_a, length_penalty,
    no_repeat_ngram, ...) over those the model was tested with, stored in the checkpoint;
    ``beam_size`` None: the test's."""
    from .data.classification import pad
    from .data.parallel import pad_sources
    from .data.subword import PAD, UNK
    from .data.words import tokenizer_from_artifacts
    from .tasks.seq2seq import generate

    tokenizer = tokenizer_from_artifacts(artifacts)
    if hasattr(tokenizer, "extend"):  # words: a summarizer reads the start of a long source
        extended = [tokenizer.extend(t, artifacts.get("max_src_len")) for t in texts]
        ids = [tokenizer.known(e) for e, _ in extended]
    else:
        ids = tokenizer.encode_src(texts)
    ids = [s or [UNK] for s in ids]  # every source needs a position
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths pad less
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in pad_sources([ids[i] for i in order]).items()}
    oovs = None
    if getattr(model, "copy", False):  # the source's unknown words can be copied
        oovs = [extended[i][1] for i in order]
        src_ext = pad([extended[i][0] or [UNK] for i in order], PAD)["tokens"]
        inputs.update(src_ext=src_ext.to(device), n_ext=max(map(len, oovs)))
    beam_size = beam_size or artifacts.get("beam_size", 5)
    out = generate(model, beam_size=beam_size, **inputs,
                   **{**artifacts.get("decoding", {}), **decoding})
    outputs = [""] * len(texts)
    for i, hyp in zip(order, tokenizer.decode_tgt(out, oovs)):
        outputs[i] = hyp if texts[i].strip() else ""
    return outputs


def _read_texts(args, keep_blank: bool = False) -> list[str]:
    """Texts from the arguments or a file; ``keep_blank`` keeps a file's blank lines (a
    translation stays line-aligned with its source)."""
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        with stream:
            return [line.rstrip("\n") for line in stream if keep_blank or line.strip()]
    return args.texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("texts", nargs="*",
                        help="texts to classify, tag, translate or summarize")
    parser.add_argument("--file", help="one text per line; '-' for stdin")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tokenizer", choices=("simple", "whitespace"), default="simple",
                        help="NER: how raw text is split into tokens")
    parser.add_argument("--format", choices=("json", "conll"), default="json",
                        help="NER: JSON lines with entity spans, or CoNLL columns")
    parser.add_argument("--beam", type=int, default=None,
                        help="translation, summarization: beam size (1: greedy; default: the "
                        "test's); one line per input")
    gen = parser.add_argument_group("generation (music, lm)")
    gen.add_argument("--samples", type=int, default=None, help="music: pieces from scratch "
                     "(and as many continuing the primer; default 4); lm: texts (default 1)")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0, help="the same seed, the same samples")
    music = parser.add_argument_group("music: sample pieces, written as MIDI and piano-roll PNG")
    music.add_argument("--out", default="samples", help="folder for the files")
    music.add_argument("--frames", type=int, default=128, help="frames to sample per piece")
    music.add_argument("--primer", help="a MIDI, .npy or .npz file to continue (default: the "
                       "start of a test piece stored in the checkpoint)")
    music.add_argument("--wav", action="store_true", help="also render each MIDI file to WAV")
    lm = parser.add_argument_group("lm: sample text continuing a prime")
    lm.add_argument("--prime", default="\n", help="the text to continue (default: a newline)")
    lm.add_argument("--length", type=int, default=500, help="tokens to sample at most")
    lm.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0: all)")
    lm.add_argument("--top-p", type=float, default=1.0, help="sample from the nucleus of mass p")
    lm.add_argument("--stop", help="end a sample at this token (a character, or a word; "
                    "<eos> ends a line of a word model)")
    args = parser.parse_args(argv)
    model, artifacts = load(args.checkpoint)
    if artifacts.get("task") == "music":
        from .data.music import read_rolls
        from .tasks.music import write_samples

        primer = (torch.from_numpy(read_rolls(args.primer, artifacts["fs"])[0]).float()
                  if args.primer else None)
        for path in write_samples(model, artifacts, Path(args.out), args.samples or 4,
                                  args.frames, args.temperature, args.seed, primer, args.wav):
            print(path)
        return
    if artifacts.get("task") == "lm":
        from .tasks.lm import generate_text

        for text in generate_text(model, artifacts, args.prime, args.length, args.samples or 1,
                                  args.stop, args.seed, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p):
            print(text)
        return
    seq2seq = artifacts.get("task") in ("translation", "summarization")
    texts = _read_texts(args, keep_blank=seq2seq)
    if not texts:
        parser.error("no input: give texts, --file PATH or --file -")
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start:start + args.batch_size]
        if seq2seq:
            for line in transduce(model, artifacts, chunk, args.beam):
                print(line)
        elif artifacts.get("task") == "ner":
            for row in tag(model, artifacts, chunk, args.tokenizer):
                if args.format == "conll":
                    print("".join(f"{w} {t}\n" for w, t in zip(row["tokens"], row["tags"])))
                else:
                    print(json.dumps(row, ensure_ascii=False))
        else:
            for row in classify(model, artifacts, chunk):
                print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
