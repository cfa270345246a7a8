import json
import math

import pytest

from seqkit.bench.rnn import main


def test_option_rows(tmp_path, capsys):
    path = tmp_path / "b.json"
    main(["--quick", "--threads", "1", "--cells", "gru", "--options", "plain,layer_norm",
          "--sizes", "C1", "--json", str(path)])
    rows = json.loads(path.read_text())
    assert {(r["option"], r["mode"]) for r in rows} == {
        (o, m) for o in ("plain", "layer_norm") for m in ("fwd", "fwdbwd")}
    for r in rows:
        ratios = [r["custom_ratio"]] + ([r["cudnn_ratio"]] if r["option"] == "plain" else [])
        assert all(math.isfinite(x) and x > 0 for x in ratios)
        if r["option"] != "plain":
            assert r["cudnn_ms"] is None and r["cudnn_ratio"] is None
    assert "| gru | C1 | fwdbwd | layer_norm |" in capsys.readouterr().out


def test_unknown_option(capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--cells", "gru", "--options", "plain,no_such_option"])
    assert "no_such_option" in capsys.readouterr().err


def test_summary_bolds_the_ratios_above_the_targets(capsys):
    from seqkit.bench.rnn import print_summary

    rows = [dict(cell="lstm", option="layer_norm", mode=mode, size="C1", threads=threads,
                 custom_ratio=ratio)
            for mode, threads, ratio in (("fwdbwd", 1, 1.31), ("fwdbwd", 2, 1.5),
                                         ("fwd", 1, 1.2), ("fwd", 2, 2.01))]
    print_summary(rows)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| cell | option | train C1 1t | train C1 2t | eval C1 1t | eval C1 2t |"
    assert lines[2] == "| lstm | layer_norm | **1.31** | 1.50 | 1.20 | **2.01** |"
