"""`python scripts/bench_rnn.py ...` is `seqkit bench rnn ...`: see seqkit/bench/rnn.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also from an uninstalled checkout
from seqkit.bench.rnn import main  # noqa: E402

if __name__ == "__main__":
    main()
