"""The CRF benchmark against pytorch-crf, on a small grid (losses and paths checked equal first)."""
import json

import pytest

from seqkit.bench.peers import main


def test_crf_grid_gives_a_row_per_shape_and_op(tmp_path, capsys):
    pytest.importorskip("torchcrf")
    out = tmp_path / "crf.json"
    main(["crf", "--threads", "1", "--repeats", "2", "--batch", "2", "5", "--length", "6",
          "--tags", "3", "--json", str(out), "--work", str(tmp_path)])
    rows = json.loads(out.read_text())
    assert [(r["batch"], r["op"]) for r in rows] == [
        (b, op) for b in (2, 5) for op in ("forward", "forward+backward", "viterbi")]
    # rounds dominate elementwise, so do their medians: the ratio lies in the rounds' range
    assert all(r["ratio_range"][0] <= r["ratio"] <= r["ratio_range"][1] for r in rows)
    assert "| viterbi | 1 | 5 | 6 | 3 |" in capsys.readouterr().out
