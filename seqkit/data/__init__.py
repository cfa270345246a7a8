"""Datasets: the catalog and cache, vocabularies, and one reader module per dataset family."""
from .cache import ChecksumError, data_root, dataset_file, derived_root, verify
from .catalog import DATASETS, DatasetSpec, Source
from .text import (Example, kfold, load_sentiment, load_user_sentiment, read_labelled_jsonl,
                   read_labelled_tsv, read_mr, read_sst_trees, split_examples, tokenize)
from .vocab import Vocab

__all__ = ["ChecksumError", "DATASETS", "DatasetSpec", "Source", "data_root", "dataset_file",
           "derived_root", "verify", "Vocab", "Example", "tokenize", "read_labelled_tsv",
           "read_labelled_jsonl", "read_sst_trees", "read_mr", "split_examples", "kfold",
           "load_sentiment", "load_user_sentiment"]
