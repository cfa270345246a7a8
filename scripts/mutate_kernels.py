"""Mutation check of the kernels' hand-written backward passes: breaking one term fails a test.

``seqkit/kernels/{lstm,gru,rnn}.py`` write BPTT by hand for every cell option (the LSTM's
time loop also in C++, ``csrc/lstm.cpp``), and ``tests/kernels/test_kernels.py`` checks each
kernel against the cell's own step loop in float64. Mutations of the Python files run the tests
with the C++ code off (``SEQKIT_NATIVE=0``: the torch ops they break are what runs); those of
the C++ file with it built afresh into the temporary directory (about half a minute each).
This script asks whether those tests would notice a wrong backward: for each entry of
``MUTATIONS`` (one dropped term, flipped sign, wrong gate, forgotten mask / zoneout keep /
layer-norm gain / peephole term, ...) it

1. copies the package ``seqkit/`` into a fresh temporary directory (the working tree is never
   touched) and replaces the mutation's ``old`` snippet by ``new`` there; ``old`` must occur
   exactly once in the file, inside the named backward function or backward helper, or the
   mutation is reported as ERROR(pattern) (so the list stays honest when the code changes);
2. runs ``python -P -m pytest -q -x -p no:cacheprovider --import-mode=append
   tests/kernels/test_kernels.py -k "equals_the_step_loop and (<selector>)"`` from the
   repository root, with PYTHONPATH = the temporary directory: only the parity tests of the
   option the mutation targets. ``-P`` keeps the current directory (the repository root, whose
   ``seqkit/`` is the unmutated package) off ``sys.path``, and ``--import-mode=append`` has
   pytest put it (for the ``tests`` package) at the end of ``sys.path``, after the copy; the
   editable install's finder sits at the end of ``sys.meta_path``, so the copy on PYTHONPATH
   wins over it;
3. reports CAUGHT (a selected test failed), SURVIVED (all passed: a gap in the tests, or an
   equivalent mutation) or ERROR (pattern missing / not unique, C++ that does not build, no test
   selected, pytest crashed, timeout).

Before the mutations it checks, once, that the copy is what gets imported (``import seqkit`` in
the same environment, and a pytest collection that must hit a canary planted in the copy), and
that the unmutated copy passes every selected test (otherwise CAUGHT would mean nothing).

Run from the repository root::

    .venv/bin/python scripts/mutate_kernels.py            # every mutation, a few minutes
    .venv/bin/python scripts/mutate_kernels.py --list     # the mutations, nothing run
    .venv/bin/python scripts/mutate_kernels.py -k peephole   # those whose id/text contains it
    .venv/bin/python scripts/mutate_kernels.py --check    # only that every pattern applies

Mutations run one at a time (concurrency 1); progress goes to stderr, the table to stdout. The
exit status is 0 only when every selected mutation was caught.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqkit"
KERNELS = "seqkit/kernels"
TESTS = "tests/kernels/test_kernels.py"
PARITY = "equals_the_step_loop"  # the kernel-vs-step-loop tests (float32 too, against float64)
TIMEOUT = 600  # seconds per pytest run

# The functions a mutation may touch: each kernel's backward and the helpers only it calls.
BACKWARD = {
    "lstm.py": {"backward"},
    "gru.py": {"backward"},
    "rnn.py": {"backward", "_relu_grad"},
    "csrc/lstm.cpp": {"backward_row", "backward_loop"},
    "bptt.py": {"_previous_rows", "input_states", "state_grads", "sigmoid_grad_", "tanh_grad",
                "norm_stats", "norm_grad", "zoneout_grad", "recurrent_grad",
                "recurrent_weight_grads", "input_half_grads"},
}


@dataclass(frozen=True)
class Mutation:
    file: str  # relative to seqkit/kernels
    where: str  # the backward function (or helper) that holds ``old``
    cell: str
    option: str
    what: str  # what is broken
    old: str  # occurs exactly once in ``file``, inside ``where``
    new: str
    tests: str  # -k expression over the parity test ids, e.g. "lstm-peephole"

    @property
    def id(self) -> str:
        return f"{self.cell}:{self.option}:{Path(self.file).stem}:{self.what}"

    @property
    def selector(self) -> str:
        return f"{PARITY} and ({self.tests})"

    @property
    def native(self) -> bool:
        """Whether it breaks the C++ step: the tests then run it (built afresh), else they run
        the kernels' torch ops (SEQKIT_NATIVE=0)."""
        return self.file.endswith(".cpp")


def M(file, where, cell, option, what, old, new, tests):
    return Mutation(file, where, cell, option, what, old, new, tests)


# Test ids look like test_kernel_equals_the_step_loop[True-False-True-lstm-zoneout=0.3]: "lstm]"
# selects the plain cell only, "lstm-zoneout" every case whose first option is zoneout. (-k
# cannot hold "=", and matches substrings.)
MUTATIONS = [
    # ---------------------------------------------------------------- LSTM
    M("lstm.py", "backward", "lstm", "plain", "d_f uses c' instead of the input c",
      "torch.mul(d_c, c_in[t], out=d_f[t])", "torch.mul(d_c, c_new_[t], out=d_f[t])", "lstm]"),
    M("lstm.py", "backward", "lstm", "plain", "d_o from o instead of tanh(c')",
      "torch.mul(d_h, tanh_[t], out=d_o[t])", "torch.mul(d_h, o[t], out=d_o[t])", "lstm]"),
    M("lstm.py", "backward", "lstm", "plain", "dc carried through i instead of f",
      "torch.mul(d_c, f[t], out=dc_b)", "torch.mul(d_c, i[t], out=dc_b)", "lstm]"),
    M("bptt.py", "recurrent_grad", "lstm", "layer_norm", "hh layer norm: forgets the gain",
      "norm_grad(d * gain, raw, *stats)", "norm_grad(d, raw, *stats)", "lstm-layer_norm"),
    M("lstm.py", "backward", "lstm", "layer_norm", "c layer norm: forgets ln_c_weight in d_c",
      "norm_grad(d_ln, c_new_[t], *stats_c[t], ln_c_weight)",
      "norm_grad(d_ln, c_new_[t], *stats_c[t], None)", "lstm-layer_norm"),
    M("lstm.py", "backward", "lstm", "layer_norm", "d ln_c_weight without the normalised c",
      "d_ln_c = column_sums(d_shown, c_hat)",
      "d_ln_c = column_sums(d_shown, torch.ones_like(c_hat))", "lstm-layer_norm"),
    M("lstm.py", "backward", "lstm", "recurrent_dropout", "dh not multiplied by the mask",
      "dh_b.mul_(mask[:bs[t]])", "dh_b.mul_(1.0)", "lstm-recurrent_dropout"),
    M("lstm.py", "backward", "lstm", "recurrent_dropout", "d_weight_hh from the unmasked h",
      "h_prev = h_prev * rows(mask, bs)", "h_prev = h_prev", "lstm-recurrent_dropout"),
    M("lstm.py", "backward", "lstm", "zoneout", "forgets the kept part of dh (keep_h)",
      "dh_b.add_(dh_kept)", "pass", "lstm-zoneout"),
    M("lstm.py", "backward", "lstm", "zoneout_c", "forgets the kept part of dc (keep_c)",
      "dc_b.add_(dc_kept)", "pass", "lstm-zoneout_c"),
    M("lstm.py", "backward", "lstm", "zoneout_c", "splits dc with keep_h instead of keep_c",
      "zoneout_grad(dc_b, kc[t])", "zoneout_grad(dc_b, kh[t])", "lstm-zoneout_c"),
    M("lstm.py", "backward", "lstm", "peephole", "dc forgets the p_i, p_f peephole term",
      "dc_b.addcmul_(d[t], p)", "pass",
      "lstm-peephole"),
    M("lstm.py", "backward", "lstm", "peephole", "d_c forgets the p_o peephole term",
      "d_c.addcmul_(sigmoid_grad_(d_o[t], o[t]), p_o)",
      "d_c.addcmul_(sigmoid_grad_(d_o[t], o[t]), p_o, value=0)", "lstm-peephole"),
    M("lstm.py", "backward", "lstm", "peephole", "d_weight_ch (i, f) from c' instead of c",
      "* c_prev[:, None]).sum(0)", "* c_new[:, None]).sum(0)", "lstm-peephole"),
    M("lstm.py", "backward", "lstm", "coupled", "d_f sign: c + g instead of c - g",
      "torch.mul(d_c, c_in[t] - g[t], out=d_f[t])", "torch.mul(d_c, c_in[t] + g[t], out=d_f[t])",
      "lstm-coupled"),
    M("lstm.py", "backward", "lstm", "coupled", "d_g through f instead of 1 - f",
      "torch.addcmul(d_c, d_c, f[t], value=-1, out=d_g[t])", "torch.mul(d_c, f[t], out=d_g[t])",
      "lstm-coupled"),
    M("lstm.py", "backward", "lstm", "proj_size", "d_weight_hr from tanh(c) instead of o*tanh(c)",
      "mm(d_h_new.t(), h_raw)", "mm(d_h_new.t(), tanh_cs)", "lstm and proj_size"),
    M("lstm.py", "backward", "lstm", "proj_size", "d_h' taken before the zoneout split",
      "w_hr_t(d_h_new_[t].copy_(d_h))",
      "w_hr_t(d_h_new_[t].copy_(d_out[t] + dh_b))", "lstm and proj_size"),
    # ---------------------------------------------------------------- LSTM's C++ step
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "d_i from i instead of g",
      "U d_i = dcj * g;", "U d_i = dcj * i;", "lstm]"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "d_o without the sigmoid's derivative",
      "const U d_o = d * t * (o - o * o);", "const U d_o = d * t;", "lstm]"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "dc carried through i instead of f",
      "d_prev = dcj * f;\n      if (peep) d_prev = d_prev + d_i",
      "d_prev = dcj * i;\n      if (peep) d_prev = d_prev + d_i", "lstm]"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "d_g without the tanh's derivative",
      "d_g = d_g - d_g * g * g;", "d_g = d_g;", "lstm]"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "c layer norm: forgets ln_c_weight",
      "const U g_ln = d_ln(L, j) * L.load(ln_w + j);", "const U g_ln = d_ln(L, j);",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "d ln_c_weight without ĉ'",
      "L.store(L.load(sw + j) + dl * c_hat, sw + j);", "L.store(L.load(sw + j) + dl, sw + j);",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "d ln_c_bias times ĉ'",
      "L.store(L.load(sb + j) + dl, sb + j);", "L.store(L.load(sb + j) + dl * c_hat, sb + j);",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "d gain without x̂",
      "L.store(L.load(acc + o + j) + d * x, acc + o + j);",
      "L.store(L.load(acc + o + j) + d, acc + o + j);", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "input layer norm: forgets in_gain",
      "const U g = d * L.load(a.in_gain + o + j);", "const U g = d;", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "d in_gain without ŷ",
      "L.store(L.load(si + o + j) + d * x, si + o + j);",
      "L.store(L.load(si + o + j) + d, si + o + j);", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "input layer norm: ŷ off its mean",
      "return (L.load(y + o + j) - U(m_in)) * U(r_in);", "return L.load(y + o + j) * U(r_in);",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "layer_norm", "in_gain's sum read from the bias's",
      "has(in_gain) ? total.narrow(0, 2 * W + 2 * H, W)",
      "has(in_gain) ? total.narrow(0, W + 2 * H, W)", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain",
      "c<t-1> of rows joining at a step read from the carried c, not c0",
      "const T* cp = r < a.carried ? a.c[r] : a.c0[r];",
      "const T* cp = a.carried ? a.c[r] : a.c0[r];", "lstm]"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "d bias summed from d_gates ⋆ the gates",
      "L.store(L.load(sd + j) + L.load(dg + j), sd + j);",
      "L.store(L.load(sd + j) + L.load(dg + j) * L.load(x + j), sd + j);", "lstm]"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "layer_norm", "ln_c's weight and bias sums swapped",
      "has(ln_w) ? total.narrow(0, W, H)", "has(ln_w) ? total.narrow(0, W + H, H)",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "hh layer norm: forgets the gain",
      "const U g = d * L.load(a.gain + o + j);", "const U g = d;", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "hh layer norm: drops the x̂ term",
      "(g - U(s_q / H) - L.load(xh + o + j) * U(s_qx / H))", "(g - U(s_q / H))",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm",
      "hh layer norm: mean(g ⋆ x̂) without the gain", "gx_q = g_q * x;", "gx_q = d * x;",
      "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "input layer norm: drops mean(g)",
      "(g - U(s_in / H) - x_in(L, j)", "(g - x_in(L, j)", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "layer_norm", "layer norm: d bias summed squared",
      "if (a.bias) L.store(L.load(sd + o + j) + d, sd + o + j);",
      "if (a.bias) L.store(L.load(sd + o + j) + d * d, sd + o + j);", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "peephole", "dc forgets the p_f peephole term",
      "d_prev + d_i * L.load(peep + j) + d_f * L.load(peep + fo + j);",
      "d_prev + d_i * L.load(peep + j);", "lstm-peephole"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "peephole", "d_c forgets the p_o peephole term",
      "if (peep) dcj = dcj + d_o * L.load(peep + po + j);", "if (peep) dcj = dcj;",
      "lstm-peephole"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "coupled", "d_f sign: c + g instead of c - g",
      "d_f = dcj * (c0 - g);", "d_f = dcj * (c0 + g);", "lstm-coupled"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "coupled", "d_g through f instead of 1 - f",
      "d_g = dcj - dcj * f;", "d_g = dcj * f;", "lstm-coupled"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "peephole+coupled", "dc forgets p_f (coupled)",
      "if (peep) d_prev = d_prev + d_f * L.load(peep + fo + j);", "", "lstm-peephole-coupled"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "recurrent_dropout",
      "dh not multiplied by the mask", "dh_b.mul_(mask->narrow(0, 0, b));", "dh_b.mul_(1.0);",
      "lstm-recurrent_dropout"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "recurrent_dropout",
      "dh not multiplied by the mask (brgemm: in each thread's rows)",
      "L.store(L.load(dh_rows[r] + j) * L.load(mask_rows[r] + j), dh_rows[r] + j);",
      "L.store(L.load(dh_rows[r] + j), dh_rows[r] + j);", "lstm-recurrent_dropout and float32"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "plain", "the outputs' gradient left out of d_h",
      "dout ? L.load(dh + j) + L.load(dout + j) : L.load(dh + j)", "L.load(dh + j)", "lstm]"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "plain",
      "the outputs' gradient left out of d_h where its rows are strided",
      "if (!fold) at::add_out(d_h, dh_b, st(d_hs, t));", "if (!fold) d_h.copy_(dh_b);",
      "lstm and layout"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "zoneout", "forgets the kept part of dh (keep_h)",
      "if (dh_kept.defined()) dh_b.add_(dh_kept);", "", "lstm-zoneout"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "zoneout_c",
      "forgets the kept part of dc (keep_c)", "L.store(d_prev + dc_in * keep_c, dcp + j);",
      "L.store(d_prev, dcp + j);", "lstm-zoneout_c"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "zoneout_c",
      "splits dc with keep_h instead of keep_c",
      "KeepRows<T>{Rows<T>(kc.mask), T(kc.r())}, vec<T>(in_gain),\n" + " " * 26 + "Rows<T>(in_raw)",
      "KeepRows<T>{Rows<T>(kh.mask), T(kh.r())}, vec<T>(in_gain),\n" + " " * 26 + "Rows<T>(in_raw)",
      "lstm-zoneout_c"),
    M("csrc/lstm.cpp", "backward_row", "lstm", "zoneout", "all of d_h taken as h's kept part",
      "L.store(L.load(dh + j) * a.kh.at(L, r, j), dh + j);", "L.store(L.load(dh + j), dh + j);",
      "lstm-zoneout"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "layer_norm",
      "W_hh's transpose applied to d_gates, not d of the raw product",
      "const at::Tensor d_prod = st(has(gain) ? *d_raw : d_gates, t);",
      "const at::Tensor d_prod = st(d_gates, t);", "lstm-layer_norm"),
    M("csrc/lstm.cpp", "backward_loop", "lstm", "proj_size", "d_h' taken before the zoneout split",
      "st(*d_h_new, t).copy_(d_h);", "st(*d_h_new, t).copy_(st(d_hs, t) + dh_b);",
      "lstm and proj_size"),
    # ---------------------------------------------------------------- GRU
    M("gru.py", "backward", "gru", "plain", "d_z sign: n - h instead of h - n",
      "torch.mul(d_h, h_in[t] - n[t], out=d_z[t])", "torch.mul(d_h, n[t] - h_in[t], out=d_z[t])",
      "gru]"),
    M("gru.py", "backward", "gru", "plain", "d n-pre-activation through z instead of 1 - z",
      "tanh_grad(torch.addcmul(d_h, d_h, z[t], value=-1), n[t], out=d_gx_n[t])",
      "tanh_grad(torch.mul(d_h, z[t]), n[t], out=d_gx_n[t])", "gru]"),
    M("gru.py", "backward", "gru", "plain", "d_r from r instead of rec_n",
      "torch.mul(d_gx_n[t], rec_n[t], out=d_r[t])", "torch.mul(d_gx_n[t], r[t], out=d_r[t])",
      "gru]"),
    M("bptt.py", "recurrent_grad", "gru", "layer_norm", "hh layer norm: forgets the gain",
      "norm_grad(d * gain, raw, *stats)", "norm_grad(d, raw, *stats)", "gru-layer_norm"),
    M("gru.py", "backward", "gru", "layer_norm", "article form: forgets the hh gains",
      "g_rz, g_n = (None, None) if gain is None else gain.split(2 * H)", "g_rz, g_n = (None, None)",
      "gru and layer_norm"),
    M("gru.py", "backward", "gru", "recurrent_dropout", "dh not multiplied by the mask",
      "dh_b.add_(dhd if mask is None else dhd * mask[:bs[t]])", "dh_b.add_(dhd)",
      "gru-recurrent_dropout"),
    M("gru.py", "backward", "gru", "recurrent_dropout", "d_weight_hh from the unmasked h",
      "hd_prev = h_prev if mask is None else h_prev * rows(mask, bs)", "hd_prev = h_prev",
      "gru-recurrent_dropout"),
    M("gru.py", "backward", "gru", "zoneout", "forgets the kept part of dh",
      "dh_b.add_(dh_kept)", "pass", "gru-zoneout"),
    M("gru.py", "backward", "gru", "reset_after=False", "d_r skips W_hn (d n instead of d rh)",
      "torch.mul(d_rhd, hd_in[t], out=d_r[t])", "torch.mul(d_gx_n[t], hd_in[t], out=d_r[t])",
      "gru-reset_after"),
    M("gru.py", "backward", "gru", "reset_after=False", "dh through r*h forgets r",
      ".addcmul_(d_rhd, r[t])", ".add_(d_rhd)", "gru-reset_after"),
    M("gru.py", "backward", "gru", "reset_after=False", "d_weight_hh (n rows) from h, not r*h",
      "(slice(2 * H, None), rh)", "(slice(2 * H, None), hd_prev)", "gru-reset_after"),
    # ---------------------------------------------------------------- RNN
    M("bptt.py", "tanh_grad", "rnn", "plain", "tanh' sign: 1 + y^2 instead of 1 - y^2",
      "torch.addcmul(d, d * y, y, value=-1, out=out)",
      "torch.addcmul(d, d * y, y, value=1, out=out)", "rnn]"),
    M("rnn.py", "backward", "rnn", "plain", "forgets the carried dh (truncated BPTT)",
      "zoneout_grad(d_out[t] + dh_b, kh[t])", "zoneout_grad(d_out[t], kh[t])", "rnn]"),
    M("bptt.py", "input_half_grads", "rnn", "plain", "input weight gradient from the wrong rows",
      "mm(d.t(), x) if need[1]", "mm(d.t(), x.flip(0)) if need[1]", "rnn]"),
    M("bptt.py", "input_half_grads", "lstm", "plain", "bias gradient averaged, not summed",
      "d_bias = d.sum(0)", "d_bias = d.mean(0)", "lstm]"),
    M("rnn.py", "_relu_grad", "rnn", "relu", "relu' passes where h' = 0 (y >= 0)",
      "torch.mul(d, y > 0, out=out)", "torch.mul(d, y >= 0, out=out)", "rnn-nonlinearity"),
    M("bptt.py", "recurrent_grad", "rnn", "layer_norm", "hh layer norm: forgets the gain",
      "norm_grad(d * gain, raw, *stats)", "norm_grad(d, raw, *stats)", "rnn-layer_norm"),
    M("bptt.py", "recurrent_weight_grads", "rnn", "layer_norm",
      "d gain without the normalised rows", "d_gain = column_sums(d, normed)[0]",
      "d_gain = column_sums(d, normed)[1]", "rnn-layer_norm"),
    M("rnn.py", "backward", "rnn", "recurrent_dropout", "dh not multiplied by the mask",
      "dh_b.mul_(mask[:bs[t]])", "dh_b.mul_(1.0)", "rnn-recurrent_dropout"),
    M("rnn.py", "backward", "rnn", "zoneout", "forgets the kept part of dh",
      "dh_b.add_(dh_kept)", "pass", "rnn-zoneout"),
    M("bptt.py", "zoneout_grad", "rnn", "zoneout", "d of h' not scaled by 1 - keep",
      "return d - to_old, to_old", "return d, to_old", "rnn-zoneout"),
]


class PatternError(Exception):
    pass


def _function_spans(source: str, cpp: bool = False) -> dict[str, list[tuple[int, int]]]:
    """Character spans of every function in ``source``, by name (C++: from the line that
    names it to the next closing brace at the start of a line)."""
    if cpp:
        return {m.group(1): [(m.start(), source.index("\n}\n", m.end()))]
                for m in re.finditer(r"^\S.*?\b(\w+)\(", source, re.MULTILINE)}
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, []).append(
                (starts[node.lineno - 1], starts[node.end_lineno]))
    return spans


def apply(mutation: Mutation, package: Path) -> None:
    """Replace ``old`` by ``new`` in the copy at ``package`` (a seqkit/ folder)."""
    if mutation.where not in BACKWARD.get(mutation.file, ()):
        raise PatternError(f"{mutation.where!r} is not a backward function of {mutation.file}")
    path = package / "kernels" / mutation.file
    source = path.read_text()
    count = source.count(mutation.old)
    if count != 1:
        raise PatternError(f"pattern {'not found' if count == 0 else f'not unique ({count}x)'} "
                           f"in {mutation.file}: {mutation.old!r}")
    at = source.index(mutation.old)
    spans = _function_spans(source, mutation.native).get(mutation.where, [])
    if not any(a <= at and at + len(mutation.old) <= b for a, b in spans):
        raise PatternError(f"pattern is not inside {mutation.where}() of {mutation.file}: "
                           f"{mutation.old!r}")
    mutated = source.replace(mutation.old, mutation.new)
    if not mutation.native:
        ast.parse(mutated)  # a mutation must break a term, not the syntax
    path.write_text(mutated)


def copy_package(tmp: Path) -> Path:
    shutil.copytree(PACKAGE, tmp / "seqkit", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp / "seqkit"


def environment(tmp: Path, native: bool = False) -> dict[str, str]:
    """The copy in ``tmp`` first on the path; the C++ step on (built into ``tmp``) or off."""
    env = dict(os.environ)
    env["SEQKIT_NATIVE"] = "1" if native else "0"
    env["TORCH_EXTENSIONS_DIR"] = str(tmp / "torch_extensions")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSAFEPATH", None)
    return env


def pytest(tmp: Path, *args: str, native: bool = False) -> subprocess.CompletedProcess:
    """pytest on the package copy in ``tmp``, from the repository root (-P: not on sys.path)."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--import-mode=append", TESTS, *args],
        cwd=ROOT, env=environment(tmp, native), capture_output=True, text=True,
        timeout=TIMEOUT)


def builds(tmp: Path) -> bool:
    """Whether the copy's C++ code builds (into ``tmp``, where its tests then find it): a failed
    build would leave them on the torch ops, and a C++ mutation would seem to survive."""
    run = subprocess.run(
        [sys.executable, "-P", "-c",
         "import sys; from seqkit.kernels import native; sys.exit(native.module() is None)"],
        cwd=ROOT, env=environment(tmp, True), capture_output=True, text=True, timeout=TIMEOUT)
    return run.returncode == 0


def check_isolation() -> None:
    """That the package copy on PYTHONPATH is what ``import seqkit`` and pytest import."""
    with tempfile.TemporaryDirectory(prefix="mutate_kernels_") as name:
        tmp = Path(name)
        package = copy_package(tmp)
        found = subprocess.run(
            [sys.executable, "-P", "-c", "import seqkit.kernels; print(seqkit.kernels.__file__)"],
            cwd=ROOT, env=environment(tmp), capture_output=True, text=True, check=True)
        imported = Path(found.stdout.strip()).resolve()
        if not imported.is_relative_to(package.resolve()):
            sys.exit(f"isolation: `import seqkit` found {imported}, not the copy in {package}")
        canary = "mutate_kernels canary: the package copy is imported"
        with open(package / "kernels" / "__init__.py", "a") as f:
            f.write(f"\nraise ImportError({canary!r})\n")
        run = pytest(tmp, "--collect-only")
        if run.returncode == 0 or canary not in run.stdout + run.stderr:
            sys.exit("isolation: pytest did not import the package copy (the canary in the "
                     "copy's kernels/__init__.py did not fire)")
    print(f"isolation: ok, seqkit.kernels imported from the temporary copy ({imported})",
          file=sys.stderr)


def check_baseline(mutations: list[Mutation]) -> None:
    """That the unmutated copy passes every test the mutations select, with the C++ step and
    with the torch ops as they run them."""
    for native in sorted({m.native for m in mutations}):
        tests = sorted({f"({m.tests})" for m in mutations if m.native == native})
        selector = f"{PARITY} and (" + " or ".join(tests) + ")"
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mutate_kernels_") as name:
            copy_package(Path(name))
            if native and not builds(Path(name)):
                sys.exit("baseline: the unmutated C++ code does not build")
            run = pytest(Path(name), "-k", selector, native=native)
        summary = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
        if run.returncode != 0:
            sys.exit(f"baseline: the unmutated kernels fail the selected tests (rc "
                     f"{run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
        print(f"baseline ({'C++ step' if native else 'torch ops'}): ok, unmutated copy: "
              f"{summary} ({time.monotonic() - start:.0f}s)", file=sys.stderr)


def _caught_by(output: str) -> str:
    """The first failing test case and what mismatched, from pytest's short summary."""
    line = next((ln for ln in output.splitlines() if ln.startswith("FAILED ")), "")
    case = re.search(r"\[(.*?)\]", line)
    error = re.search(r"^E\s+(\w*(?:Error|Exception)\b.*)$", output, re.MULTILINE)
    detail = "" if error is None else error.group(1)  # the parity test names what mismatched
    detail = detail.replace("AssertionError: ", "mismatch in ")[:50]
    return f"{case.group(1) if case else '?'}: {detail}"


def run_one(mutation: Mutation) -> tuple[str, str]:
    """(status, detail) of one mutation."""
    with tempfile.TemporaryDirectory(prefix="mutate_kernels_") as name:
        tmp = Path(name)
        try:
            apply(mutation, copy_package(tmp))
        except (PatternError, SyntaxError) as e:
            return "ERROR(pattern)", str(e)
        try:
            if mutation.native and not builds(tmp):
                return "ERROR(build)", "the mutated C++ code does not build"
            run = pytest(tmp, "-x", "-k", mutation.selector, native=mutation.native)
        except subprocess.TimeoutExpired:
            return "ERROR(timeout)", f"pytest ran over {TIMEOUT}s"
    out = run.stdout + run.stderr
    if run.returncode == 1:
        return "CAUGHT", _caught_by(out)
    if run.returncode == 0:
        return "SURVIVED", (run.stdout.strip().splitlines() or [""])[-1]
    if run.returncode == 5:
        return "ERROR(no tests)", f"-k {mutation.selector!r} selects nothing"
    return f"ERROR(pytest rc {run.returncode})", (out.strip().splitlines() or [""])[-1][:80]


def table(rows: list[tuple[Mutation, str, str]]) -> str:
    head = ("file", "option", "mutation", "result", "first failure / note")
    body = [(f"{m.file}", f"{m.cell} {m.option}", m.what, status, detail)
            for m, status, detail in rows]
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
             for r in [head, *body]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every pattern applies, run no tests")
    parser.add_argument("-k", metavar="SUBSTRING",
                        help="only mutations whose id, text or selector contain it")
    args = parser.parse_args(argv)
    mutations = MUTATIONS
    if args.k:
        key = args.k.lower()
        mutations = [m for m in MUTATIONS if key in " ".join(
            (m.id, m.file, m.old, m.new, m.tests)).lower()]
        if not mutations:
            print(f"no mutation matches {args.k!r}", file=sys.stderr)
            return 2
    if args.list:
        for n, m in enumerate(mutations, 1):
            print(f"{n:2d}. {m.id}\n    {m.file} {m.where}(): {m.old!r}\n"
                  f"    -> {m.new!r}\n    pytest -k {m.selector!r}")
        return 0
    if args.check:
        bad = 0
        for m in mutations:
            with tempfile.TemporaryDirectory(prefix="mutate_kernels_") as name:
                try:
                    apply(m, copy_package(Path(name)))
                except (PatternError, SyntaxError) as e:
                    bad += 1
                    print(f"ERROR(pattern) {m.id}: {e}")
        print(f"{len(mutations) - bad}/{len(mutations)} patterns apply")
        return 1 if bad else 0

    start = time.monotonic()
    check_isolation()
    check_baseline(mutations)
    rows = []
    for n, m in enumerate(mutations, 1):
        print(f"[{n}/{len(mutations)}] {m.cell} {m.option}: {m.what} ...", end=" ",
              file=sys.stderr, flush=True)
        t0 = time.monotonic()
        status, detail = run_one(m)
        print(f"{status} ({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
        rows.append((m, status, detail))
    print(table(rows))
    counts = {s: sum(r[1] == s for r in rows) for s in dict.fromkeys(r[1] for r in rows)}
    print(f"\n{len(rows)} mutations: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {time.monotonic() - start:.0f}s in all")
    return 0 if all(status == "CAUGHT" for _, status, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
