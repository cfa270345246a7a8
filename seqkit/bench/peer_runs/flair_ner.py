"""flair's side of ``bench_peers.py ner``; runs in flair's environment (seqkit/bench/peer_runs/setup.sh).

Trains flair's ``SequenceTagger`` (BiLSTM-CRF: ``OneHotEmbeddings`` learnt from scratch, one
bidirectional LSTM layer, CRF) with flair's ``ModelTrainer`` and its default recipe (SGD,
learning rate 0.1, gradient clipping 5), without per-epoch evaluation or model files, then
tags the test sentences. Writes ``OUT/result.json``: training seconds (the ``train`` call),
sentences and tokens trained on, parameters, the predicted test tags (IOB2) and the seconds
``predict`` took, in batches of ``--batch`` sentences of similar length.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus
from flair.datasets import ColumnCorpus
from flair.embeddings import OneHotEmbeddings
from flair.models import SequenceTagger
from flair.trainers import ModelTrainer


def iob2(sentence, label: str) -> list[str]:
    tags = ["O"] * len(sentence)
    for span in sentence.get_spans(label):
        kind = span.get_label(label).value
        first = span.tokens[0].idx - 1  # 1-based
        tags[first] = "B-" + kind
        for token in span.tokens[1:]:
            tags[token.idx - 1] = "I-" + kind
    return tags


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("out", "data"):
        p.add_argument(f"--{name}", required=True)
    for name in ("threads", "epochs", "embed", "hidden", "batch", "min-freq"):
        p.add_argument(f"--{name}", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    flair.device = torch.device("cpu")
    corpus = ColumnCorpus(args.data, {0: "text", 1: "ner"}, train_file="train.txt",
                          dev_file="val.txt", test_file="test.txt", in_memory=True)
    train = Corpus(train=corpus.train, dev=None, test=None, sample_missing_splits=False)
    embeddings = OneHotEmbeddings.from_corpus(train, embedding_length=args.embed,
                                              min_freq=args.min_freq)
    tagger = SequenceTagger(embeddings=embeddings, hidden_size=args.hidden, rnn_layers=1,
                            tag_dictionary=train.make_label_dictionary("ner", add_unk=False),
                            tag_type="ner",
                            use_rnn=True, use_crf=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ModelTrainer(tagger, train).train(
            tmp, learning_rate=0.1, mini_batch_size=args.batch, max_epochs=args.epochs,
            save_final_model=False, use_final_model_for_eval=True, create_file_logs=False,
            create_loss_file=False, embeddings_storage_mode="none")
        train_s = time.perf_counter() - start
    test = list(corpus.test)
    order = sorted(range(len(test)), key=lambda i: len(test[i]))
    start = time.perf_counter()
    for i in range(0, len(order), args.batch):
        tagger.predict([test[j] for j in order[i:i + args.batch]], mini_batch_size=args.batch,
                       label_name="predicted")
    predict_s = time.perf_counter() - start
    sentences = len(corpus.train)
    result = {"train_s": train_s, "epochs": args.epochs,
              "sentences": sentences * args.epochs,
              "tokens": sum(len(s) for s in corpus.train) * args.epochs,
              "params": sum(p.numel() for p in tagger.parameters()),
              "tags": [iob2(s, "predicted") for s in test], "predict_s": predict_s,
              "version": f"flair {flair.__version__}, torch {torch.__version__}"}
    (Path(args.out) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
