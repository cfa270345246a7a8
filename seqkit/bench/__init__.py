"""The benchmarks: `seqkit bench rnn|translation|peers ...` (scripts/bench_*.py run the same).

Each compares backends or systems side by side in one run, repeats, reports medians and
ratios, prints a table and can write JSON. peer_runs/ holds the scripts the peers run in
their own environments (peer_runs/setup.sh makes those).
"""
