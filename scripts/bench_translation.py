"""`python scripts/bench_translation.py ...` is `seqkit bench translation ...`: see seqkit/bench/translation.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also from an uninstalled checkout
from seqkit.bench.translation import main  # noqa: E402

if __name__ == "__main__":
    main()
