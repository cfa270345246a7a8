"""OpenNMT-py's side of ``bench_peers.py translation``; runs in OpenNMT-py's environment
(seqkit/bench/peer_runs/setup.sh).

Trains OpenNMT-py's RNN encoder-decoder with the options matching seqkit's translation config
(brnn encoder of 2 x 128 LSTM units, 256-unit LSTM decoder, 256-dim embeddings, Luong general
attention, input feeding, bridge, tied output embedding, dropout 0.3, Adam 1e-3, label
smoothing 0.1, gradient norm 1, batches of 64 sentences) for ``--steps`` steps on the piece
files the bench wrote, without validation, saving a checkpoint every ``--save-every`` steps.
Then each checkpoint translates the test pieces with beam 5 (GNMT length penalty 0.6, at most
1.5 x the source length) and, with ``--val``, the validation pieces greedily (the bench picks
the checkpoint by their BLEU, as seqkit picks its own).

Training and translation run in this process, so that ``--precision bf16`` can run them under
``torch.autocast("cpu", dtype=torch.bfloat16)``: OpenNMT-py has mixed precision only on CUDA;
its training step's autocast region (the forward pass and the loss, the backward outside, as
torch's AMP recipe has it) runs on the CPU in bfloat16 instead, and the translation runs in
it whole. (Autocast around the whole training loop, backward and optimizer included, stops
OpenNMT-py's model from learning: its perplexity stays at the vocabulary size.)

The training time is OpenNMT's training loop (``Trainer.train``: batches read and made,
steps, a report every ``--report-every`` steps) less its checkpoint saves; the data time is
the part of it spent waiting for the next batch; sentences and target tokens (pieces and
</s>, as seqkit counts them) are counted from the batches themselves. The translation time
is OpenNMT's ``_translate`` (batches made, search, output). Writes ``OUT/result.json``.
"""
import argparse
import json
import os
import time
from pathlib import Path

CONFIG = """\
save_data: {out}/vocab
overwrite: true
src_vocab: {data}/vocab.txt
share_vocab: true
src_vocab_size: 100000
src_words_min_frequency: 0
vocab_size_multiple: 1
data:
    corpus_1:
        path_src: {data}/train.src
        path_tgt: {data}/train.tgt
src_seq_length: 1000
tgt_seq_length: 1000
encoder_type: brnn
decoder_type: rnn
rnn_type: LSTM
enc_layers: 1
dec_layers: 1
enc_hid_size: 256
dec_hid_size: 256
word_vec_size: 256
global_attention: general
input_feed: 1
bridge: true
share_decoder_embeddings: true
share_embeddings: false
dropout: [0.3]
optim: adam
learning_rate: 0.001
decay_method: none
start_decay_steps: 100000000
batch_size: {batch}
batch_type: sents
normalization: tokens
label_smoothing: 0.1
max_grad_norm: 1.0
seed: {seed}
train_steps: {steps}
save_checkpoint_steps: {save_every}
keep_checkpoint: -1
save_model: {out}/model
report_every: {report_every}
num_workers: 0
world_size: 1
"""


def arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("out", "data"):
        p.add_argument(f"--{name}", required=True)
    for name in ("threads", "steps", "batch", "save-every", "report-every", "seed", "val"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--precision", choices=["32", "bf16"], required=True)
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> str:
    """The training configuration OpenNMT-py reads."""
    return CONFIG.format(out=Path(args.out).resolve(), data=Path(args.data).resolve(),
                         batch=args.batch, steps=args.steps, save_every=args.save_every,
                         report_every=args.report_every, seed=args.seed)


class Clock:
    """Seconds spent in a function, summed over its calls (one wrapper per method)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, owner, name: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        setattr(owner, name, timed)


class Batches:
    """OpenNMT's training batches, timed and counted as the trainer takes them."""

    def __init__(self, batches, pad: int) -> None:
        self.batches, self.pad = batches, pad
        self.waiting, self.sentences, self.tokens = 0.0, 0, 0

    def __iter__(self):
        batches = iter(self.batches)
        while True:
            start = time.perf_counter()
            try:
                batch, bucket = next(batches)
            except StopIteration:
                return
            self.waiting += time.perf_counter() - start
            tgt = batch["tgt"][:, 1:, 0]  # the predicted side: pieces and </s>, padded
            self.sentences += len(tgt)
            self.tokens += int(tgt.ne(self.pad).sum())
            yield batch, bucket


def main() -> None:
    args = arguments()
    # OpenNMT's checkpoints hold an argparse.Namespace, which torch.load's weights-only mode
    # refuses; these are the ones this run has just written
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    import onmt
    import onmt.train_single
    import torch
    from onmt.bin import train as onmt_train
    from onmt.bin import translate as onmt_translate
    from onmt.constants import CorpusTask, DefaultTokens
    from onmt.models.model_saver import ModelSaverBase
    from onmt.translate.translator import Inference
    from onmt.trainer import Trainer

    torch.set_num_threads(args.threads)
    out, data = Path(args.out).resolve(), Path(args.data).resolve()
    (out / "config.yaml").write_text(config(args))
    loop, saves, translating = Clock(), Clock(), Clock()
    loop.wrap(Trainer, "train")
    saves.wrap(ModelSaverBase, "save")
    translating.wrap(Inference, "_translate")
    batches, models = [], []
    build_iter, build_model = onmt.train_single.build_dynamic_dataset_iter, \
        onmt.train_single.build_model

    def counted(opt, transforms, vocabs, task, **kwargs):
        made = build_iter(opt, transforms, vocabs, task=task, **kwargs)
        if task == CorpusTask.TRAIN:
            batches.append(Batches(made, vocabs["tgt"][DefaultTokens.PAD]))
            return batches[-1]
        return made

    def kept(*args, **kwargs):
        models.append(build_model(*args, **kwargs))
        return models[-1]
    onmt.train_single.build_dynamic_dataset_iter, onmt.train_single.build_model = counted, kept

    bf16 = args.precision == "bf16"
    if bf16:  # OpenNMT's own mixed-precision region (forward and loss), on the CPU
        torch.cuda.amp.autocast = lambda enabled=False: torch.autocast("cpu", torch.bfloat16)
    onmt_train.train(onmt_train._get_parser().parse_args(["-config", str(out / "config.yaml")]))
    train_s = loop.seconds - saves.seconds

    def translate(step: int, split: str, beam: int) -> tuple[list[str], float]:
        hyps = out / f"{split}.step{step}.hyp"
        before = translating.seconds
        opt = onmt_translate._get_parser().parse_args([
            "-model", str(out / f"model_step_{step}.pt"), "-src", str(data / f"{split}.src"),
            "-output", str(hyps), "-beam_size", str(beam), "-batch_size", str(args.batch),
            "-batch_type", "sents", "-length_penalty", "wu", "-alpha", "0.6",
            "-max_length_ratio", "1.5"])
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            onmt_translate.translate(opt)
        return hyps.read_text(encoding="utf-8").splitlines(), translating.seconds - before

    checkpoints = []
    for step in range(args.save_every, args.steps + 1, args.save_every):
        row = {"step": step}
        row["test"], row["predict_s"] = translate(step, "test", 5)
        if args.val:
            row["val"], _ = translate(step, "val", 1)
        checkpoints.append(row)
    seen = batches[0]
    result = {"train_s": train_s, "data_s": seen.waiting, "saves_s": saves.seconds,
              "steps": args.steps, "sentences": seen.sentences, "tokens": seen.tokens,
              "params": sum(p.numel() for p in models[0].parameters()),
              "checkpoints": checkpoints,
              "version": f"OpenNMT-py {onmt.__version__}, torch {torch.__version__}"}
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
