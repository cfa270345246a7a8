"""Train a seqkit task: ``python train.py task=sentiment`` (``-m`` sweeps); the same as
``seqkit train ...`` once seqkit is installed. See configs/ and seqkit/train.py.

A user's error ends the run with one line and status 1; ``--debug`` (or
``HYDRA_FULL_ERROR=1``) shows the full traceback instead."""
from seqkit.train import main

if __name__ == "__main__":
    main()
