"""`python scripts/bench_peers.py ...` is `seqkit bench peers ...`: see seqkit/bench/peers.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also from an uninstalled checkout
from seqkit.bench.peers import main  # noqa: E402

if __name__ == "__main__":
    main()
