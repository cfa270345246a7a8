"""OpenNMT-py's side of ``bench_peers.py translation``; runs in OpenNMT-py's environment
(seqkit/bench/peer_runs/setup.sh).

Trains OpenNMT-py's RNN encoder-decoder with the options matching seqkit's translation config
(brnn encoder of 2 x 128 LSTM units, 256-unit LSTM decoder, 256-dim embeddings, Luong general
attention, input feeding, bridge, tied output embedding, dropout 0.3, Adam 1e-3, label
smoothing 0.1, gradient norm 1, batches of 64 sentences) for ``--steps`` steps on the piece
files the bench wrote, without validation, then translates the test pieces with beam 5
(GNMT length penalty 0.6, at most 1.5 x the source length). Writes ``OUT/result.json``:
training seconds and target tokens (from OpenNMT's step reports), sentences, parameters,
the hypotheses (pieces) and OpenNMT's own translation time.
"""
import argparse
import json
import os
import re
import subprocess
import sys
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
seed: 1234
train_steps: {steps}
save_checkpoint_steps: {steps}
save_model: {out}/model
report_every: 1
num_workers: 0
world_size: 1
"""
STEP = re.compile(r"Step +(\d+)/ *\d+;.*bsz: *(\d+)/ *(\d+)/ *(\d+);.*; +(\d+) sec;")


def run(args: list[str], log: Path) -> str:
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # OpenNMT's checkpoints
    done = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        sys.exit(f"{' '.join(args[:1])} failed; see {log}")
    return done.stdout + done.stderr


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("out", "data"):
        p.add_argument(f"--{name}", required=True)
    for name in ("threads", "steps", "batch"):
        p.add_argument(f"--{name}", type=int, required=True)
    args = p.parse_args()
    out, data = Path(args.out).resolve(), Path(args.data).resolve()
    config = out / "config.yaml"
    config.write_text(CONFIG.format(out=out, data=data, batch=args.batch, steps=args.steps))
    log = run(["onmt.bin.train", "-config", str(config)], out / "train.log")
    reports = [tuple(map(int, m.groups())) for m in STEP.finditer(log)]
    tokens, last = 0, 0
    for step, _, tgt, _, _ in reports:  # bsz: mean source/target tokens and sentences per step
        tokens += tgt * (step - last)
        last = step
    assert last == args.steps, f"trained {last} of {args.steps} steps"
    params = int(re.search(r"number of parameters: (\d+)", log).group(1))
    hyps = out / "test.hyp"
    log = run(["onmt.bin.translate", "-model", str(out / f"model_step_{args.steps}.pt"),
               "-src", str(data / "test.src"), "-output", str(hyps), "-beam_size", "5",
               "-batch_size", str(args.batch), "-batch_type", "sents", "-length_penalty", "wu",
               "-alpha", "0.6", "-max_length_ratio", "1.5", "-report_time"],
              out / "translate.log")
    seconds = float(re.search(r"Total translation time \(s\): ([\d.]+)", log).group(1))
    import onmt
    import torch
    result = {"train_s": float(reports[-1][4]), "steps": last, "sentences": last * args.batch,
              "tokens": tokens, "params": params,
              "hyps": hyps.read_text(encoding="utf-8").splitlines(), "predict_s": seconds,
              "version": f"OpenNMT-py {onmt.__version__}, torch {torch.__version__}"}
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
