#!/usr/bin/env bash
# The peers' environments for scripts/bench_peers.py, each a virtual environment beside the
# same torch as seqkit's (2.13.0), in DIR (default ../peers):
#   DIR/flair  flair 0.15.1                      bench_peers.py ner --python DIR/flair/bin/python
#   DIR/onmt   OpenNMT-py 3.5.1 (--no-deps: it asks for torch<2.3; it runs on 2.13 as is)
#                                                bench_peers.py translation --python DIR/onmt/bin/python
# Usage: seqkit/bench/peer_runs/setup.sh [DIR]
set -euo pipefail
DIR=${1:-../peers}
mkdir -p "$DIR"
echo "torch==2.13.0" > "$DIR/constraints.txt"   # no peer requirement may move torch

python3 -m venv "$DIR/flair"
"$DIR/flair/bin/pip" install -q torch==2.13.0
"$DIR/flair/bin/pip" install -q -c "$DIR/constraints.txt" flair==0.15.1

python3 -m venv "$DIR/onmt"
"$DIR/onmt/bin/pip" install -q torch==2.13.0
"$DIR/onmt/bin/pip" install -q --no-deps OpenNMT-py==3.5.1
# what it imports at run time (onmt.transforms imports every transform's module)
"$DIR/onmt/bin/pip" install -q -c "$DIR/constraints.txt" configargparse pyyaml sentencepiece \
    sacrebleu "pyonmttok>=1.37,<2" rapidfuzz pyahocorasick fasttext-wheel spacy

"$DIR/flair/bin/python" -c "import flair, torch; print('flair', flair.__version__, 'torch', torch.__version__)"
"$DIR/onmt/bin/python" -W ignore -c "import onmt, torch; print('OpenNMT-py', onmt.__version__, 'torch', torch.__version__)"
