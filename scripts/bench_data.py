"""`python scripts/bench_data.py ...` is `seqkit bench data ...`: see seqkit/bench/data.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also from an uninstalled checkout
from seqkit.bench.data import main  # noqa: E402

if __name__ == "__main__":
    main()
