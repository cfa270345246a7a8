"""flair's side of ``bench_peers.py ner``; runs in flair's environment (seqkit/bench/peer_runs/setup.sh).

Trains flair's ``SequenceTagger`` (BiLSTM-CRF: ``OneHotEmbeddings`` learnt from scratch, one
bidirectional LSTM layer, CRF, no reprojection layer, so that the model is seqkit's) with
flair's ``ModelTrainer`` and the recipe the bench passes (optimizer, learning rate, gradient
norm, dropout, halving on a plateau), then tags the test sentences. With ``--dev`` the
trainer scores eng.testa after every epoch and the test uses the best epoch's weights; without
it, flair picks the epoch of the lowest training loss.

The training time is the sum of the training epochs (flair's ``before_training_epoch`` to
``after_training_epoch``: batches fetched, steps, per-batch logging; the dev evaluation comes
after it), and the data time the part of it spent waiting for batches, as seqkit's Throughput
measures them. Writes ``OUT/result.json``: those times, the sentences and tokens trained on,
parameters, the predicted test tags (IOB2) and the seconds ``predict`` took, in batches of
``--batch`` sentences of similar length.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path


def iob2(sentence, label: str) -> list[str]:
    tags = ["O"] * len(sentence)
    for span in sentence.get_spans(label):
        kind = span.get_label(label).value
        first = span.tokens[0].idx - 1  # 1-based
        tags[first] = "B-" + kind
        for token in span.tokens[1:]:
            tags[token.idx - 1] = "I-" + kind
    return tags


def arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("out", "data"):
        p.add_argument(f"--{name}", required=True)
    for name in ("threads", "epochs", "embed", "hidden", "batch", "min-freq", "patience",
                 "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    for name in ("lr", "clip", "dropout", "word-dropout"):
        p.add_argument(f"--{name}", type=float, required=True)
    p.add_argument("--optimizer", choices=["adam", "sgd"], required=True)
    p.add_argument("--dev", type=int, choices=[0, 1], required=True)
    return p.parse_args(argv)


def main() -> None:
    args = arguments()
    import flair
    import torch
    from flair.data import Corpus
    from flair.datasets import ColumnCorpus
    from flair.embeddings import OneHotEmbeddings
    from flair.models import SequenceTagger
    from flair.trainers import ModelTrainer
    from flair.trainers.plugins import TrainerPlugin

    class Clock(TrainerPlugin):
        """The training epochs' time and the waits for batches within them."""
        train_s = data_s = 0.0

        @TrainerPlugin.hook
        def before_training_epoch(self, **kw):
            self.start = self.ready = time.perf_counter()

        @TrainerPlugin.hook
        def before_training_batch(self, **kw):
            self.data_s += time.perf_counter() - self.ready

        @TrainerPlugin.hook
        def after_training_batch(self, **kw):
            self.ready = time.perf_counter()

        @TrainerPlugin.hook
        def after_training_epoch(self, **kw):
            self.train_s += time.perf_counter() - self.start

    torch.set_num_threads(args.threads)
    flair.set_seed(args.seed)
    flair.device = torch.device("cpu")
    corpus = ColumnCorpus(args.data, {0: "text", 1: "ner"}, train_file="train.txt",
                          dev_file="val.txt", test_file="test.txt", in_memory=True)
    train = Corpus(train=corpus.train, dev=corpus.dev if args.dev else None, test=None,
                   sample_missing_splits=False)
    embeddings = OneHotEmbeddings.from_corpus(train, embedding_length=args.embed,
                                              min_freq=args.min_freq)
    tagger = SequenceTagger(embeddings=embeddings, hidden_size=args.hidden, rnn_layers=1,
                            tag_dictionary=train.make_label_dictionary("ner", add_unk=False),
                            tag_type="ner", use_rnn=True, use_crf=True,
                            reproject_embeddings=False, dropout=args.dropout,
                            word_dropout=args.word_dropout, locked_dropout=0.0)
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        ModelTrainer(tagger, train).train(
            tmp, learning_rate=args.lr, mini_batch_size=args.batch, max_epochs=args.epochs,
            optimizer={"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[args.optimizer],
            max_grad_norm=args.clip, anneal_factor=0.5, patience=args.patience,
            min_learning_rate=0.0, save_final_model=False, create_file_logs=False,
            create_loss_file=False, embeddings_storage_mode="none", plugins=[clock])
        # train() ends by loading its best epoch's weights: by dev F1 with --dev, else by
        # training loss
    test = list(corpus.test)
    order = sorted(range(len(test)), key=lambda i: len(test[i]))
    start = time.perf_counter()
    for i in range(0, len(order), args.batch):
        tagger.predict([test[j] for j in order[i:i + args.batch]], mini_batch_size=args.batch,
                       label_name="predicted")
    predict_s = time.perf_counter() - start
    sentences = len(corpus.train)
    result = {"train_s": clock.train_s, "data_s": clock.data_s, "epochs": args.epochs,
              "sentences": sentences * args.epochs,
              "tokens": sum(len(s) for s in corpus.train) * args.epochs,
              "params": sum(p.numel() for p in tagger.parameters()),
              "tags": [iob2(s, "predicted") for s in test], "predict_s": predict_s,
              "version": f"flair {flair.__version__}, torch {torch.__version__}"}
    (Path(args.out) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
