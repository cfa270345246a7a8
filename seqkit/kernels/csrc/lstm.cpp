// seqkit's LSTM kernel (seqkit/kernels/lstm.py) on CPU: the whole time loop, forward and
// backward. Each step runs its recurrent product (float32: oneDNN's brgemm kernel on the weight
// packed once by the loop, see Product), then the gate math between the products
// in one pass over each row instead of a dozen torch ops, then the projection, zoneout and
// recurrent dropout as ATen ops. The same equations as lstm.py's torch-op path, in torch's gate
// order (i, f, g, o; coupled: f, g, o), with its options: peepholes, coupled gates, layer norm
// of the gates (the input half's too, from the raw W_ih x: that pass over the sequence's
// buffers is then the loop's own) and of c, the projection, zoneout and recurrent dropout. The
// forward keeps what layer norm's backward needs, the normalised values and 1 / std (the input
// half's mean and 1 / std only: its backward normalises W_ih x again).
//
// tanh(x) is computed as 2σ(2x) - 1 (as bptt.tanh): the vectorised exp is a tenth of the cost
// of a vectorised tanh. Every 2-D tensor has unit stride along its rows; rows may be strided.
#include <torch/extension.h>
#include <torch/version.h>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>
#include <vector>

namespace {

using at::vec::Vectorized;
constexpr double kEps = 1e-5;  // layer norm's epsilon, as F.layer_norm's default

// The math below is written once for U = Vectorized<T> (lanes) and U = T (the tail).
template <typename T> struct Lanes {
  using U = Vectorized<T>;
  static constexpr int64_t n = U::size();
  static U load(const T* p) { return U::loadu(p); }
  static void store(const U& v, T* p) { v.store(p); }
};
template <typename T> struct One {
  using U = T;
  static constexpr int64_t n = 1;
  static U load(const T* p) { return *p; }
  static void store(U v, T* p) { *p = v; }
};

template <typename T> inline T exp_(T x) { return std::exp(x); }
template <typename T> inline Vectorized<T> exp_(const Vectorized<T>& x) { return x.exp(); }
template <typename U> inline U sigmoid(U x) { return U(1) / (U(1) + exp_(U(0) - x)); }
template <typename U> inline U tanh_(U x) { return U(2) / (U(1) + exp_(U(-2) * x)) - U(1); }

// f(L, j) for j = 0..n-1, a vector of lanes at a time, then one by one
template <typename T, typename F> inline void each(int64_t n, F&& f) {
  int64_t j = 0;
  for (; j + Lanes<T>::n <= n; j += Lanes<T>::n) f(Lanes<T>{}, j);
  for (; j < n; ++j) f(One<T>{}, j);
}

// the sums over j of the K values f(L, j) returns (std::array<U, K>), f called once for each
// j, in any order: two vectors of lanes at a time, so that two chains of adds overlap
template <typename T, size_t K = 2, typename F> inline std::array<T, K> sums(int64_t n, F&& f) {
  using V = Vectorized<T>;
  constexpr int64_t w = V::size();
  std::array<V, K> a0, a1;
  a0.fill(V(0)), a1.fill(V(0));
  int64_t j = 0;
  for (; j + 2 * w <= n; j += 2 * w) {
    const auto x0 = f(Lanes<T>{}, j), x1 = f(Lanes<T>{}, j + w);
    for (size_t k = 0; k < K; ++k) a0[k] = a0[k] + x0[k], a1[k] = a1[k] + x1[k];
  }
  if (j + w <= n) {
    const auto x = f(Lanes<T>{}, j);
    for (size_t k = 0; k < K; ++k) a0[k] = a0[k] + x[k];
    j += w;
  }
  std::array<T, K> total;
  for (size_t k = 0; k < K; ++k) {
    total[k] = at::vec::vec_reduce_all<T>([](V p, V q) { return p + q; }, a0[k] + a1[k]);
  }
  for (; j < n; ++j) {
    const auto x = f(One<T>{}, j);
    for (size_t k = 0; k < K; ++k) total[k] += x[k];
  }
  return total;
}

// layer norm statistics of x (n,): mean and 1 / sqrt(variance + eps), two passes (one pass's
// E[x²] - E[x]² loses digits where the mean is large against the spread)
template <typename T> inline std::pair<T, T> moments(const T* x, int64_t n) {
  const T mean = sums<T, 1>(n, [&](auto L, int64_t j) {
    using U = typename decltype(L)::U;
    return std::array<U, 1>{L.load(x + j)};
  })[0] / n;
  const T var = sums<T, 1>(n, [&](auto L, int64_t j) {
    using U = typename decltype(L)::U;
    const U d = L.load(x + j) - U(mean);
    return std::array<U, 1>{d * d};
  })[0] / n;
  return {mean, T(1) / std::sqrt(var + T(kEps))};
}

using Opt = c10::optional<at::Tensor>;

bool has(const Opt& t) { return t.has_value() && t->defined(); }

// the packed rows of the steps: step t is rows start[t] .. start[t] + bs[t] of every buffer of
// N rows; a buffer of fewer rows (inference: one step's) is reused, rows 0 .. bs[t], each step
// (the carried c may then be the c' this step overwrites: each element is read before written)
struct Steps {
  std::vector<int64_t> bs, start;
  explicit Steps(std::vector<int64_t> sizes) : bs(std::move(sizes)), start(bs.size() + 1, 0) {
    for (size_t t = 0; t < bs.size(); ++t) start[t + 1] = start[t] + bs[t];
  }
  at::Tensor operator()(const at::Tensor& x, int64_t t) const {
    return x.narrow(0, x.size(0) < start.back() ? 0 : start[t], bs[t]);
  }
  Opt operator()(const Opt& x, int64_t t) const {
    return has(x) ? Opt((*this)(*x, t)) : Opt();
  }
  int64_t first(bool reverse) const { return reverse ? int64_t(bs.size()) - 1 : 0; }
  int64_t next(bool reverse) const { return reverse ? -1 : 1; }
  bool in(int64_t t) const { return t >= 0 && t < int64_t(bs.size()); }
};

// a (b, n) buffer with contiguous rows, or none (null): row r at p + r * stride
template <typename T> struct Rows {
  T* p = nullptr;
  int64_t stride = 0, n = 0;  // n: its rows
  Rows() = default;
  explicit Rows(const at::Tensor& t)
      : p(t.data_ptr<T>()), stride(t.dim() > 1 ? t.stride(0) : 1), n(t.size(0)) {
    TORCH_CHECK(t.dim() == 1 || t.stride(1) == 1, "seqkit lstm step: rows must be contiguous");
  }
  explicit Rows(const Opt& t) : Rows(has(t) ? Rows(*t) : Rows()) {}
  T* operator[](int64_t r) const { return p ? p + r * stride : nullptr; }
  explicit operator bool() const { return p != nullptr; }
  Rows at(const Steps& st, int64_t t) const {  // step t's rows, as Steps gives a tensor's
    return p ? Rows(p + (n < st.start.back() ? 0 : st.start[t]) * stride, stride, st.bs[t])
             : Rows();
  }

 private:
  Rows(T* p_, int64_t stride_, int64_t n_) : p(p_), stride(stride_), n(n_) {}
};

// zoneout's keep in the row math: a 0/1 mask's rows (b, n) or one rate; off with neither
template <typename T> struct KeepRows {
  Rows<T> mask;
  T rate;  // < 0: none
  bool on() const { return bool(mask) || rate >= 0; }
  template <typename L> auto at(L, int64_t r, int64_t j) const {
    using U = typename L::U;
    return mask ? L::load(mask[r] + j) : U(rate);
  }
};

struct Gates {  // the layout of a row of gates, torch's order: i, f, g, o (coupled: f, g, o)
  int64_t H, S;  // hidden size, sigmoid gates (3; coupled 2)
  bool coupled;
  int64_t f() const { return (S - 2) * H; }
  int64_t g() const { return (S - 1) * H; }
  int64_t o() const { return S * H; }
  int64_t peep_o() const { return (S - 1) * H; }  // weight_ch holds i, f, o (coupled: f, o)
};

template <typename T> struct Forward {
  Rows<T> acts;  // (b, G*H): the gates' pre-activations, base + prod or, with layer norm,
  Rows<T> prod, base;  // base + LN(prod) ⋆ gain (base may be acts itself); the activations
  const T *gain, *peep, *ln_w, *ln_b;  // after; (G*H), (S*H), (H) or null
  Rows<T> c, c_new, tanh_c, h;  // c<t-1>; c', tanh([LN] c'), o ⋆ that (b, H)
  Rows<T> norm, rstd, c_hat, rstd_c;  // with layer norm: x̂ (b, G*H) and 1/std (b, G) of the
  // gates, ĉ' (b, H) and its 1/std (b); zoneout: h is lerp(h', h<t-1>, keep_h) where kh is on,
  Rows<T> h_prev, cs;  // and cs gets lerp(c', c<t-1>, keep_c) where kc is
  KeepRows<T> kh, kc;
  // with in_gain, base is the raw input half W_ih x, the gates get LN(base) ⋆ in_gain + in_bias
  const T *in_gain, *in_bias;  // (G*H) or null, each gate's block normalised apart, its mean
  Rows<T> in_stats;  // and 1/std kept (b, 2G)
  Forward at(const Steps& st, int64_t t) const {  // step t's rows of the sequence's buffers
    Forward a = *this;
    for (Rows<T>* r : {&a.acts, &a.base, &a.c_new, &a.tanh_c, &a.h, &a.norm, &a.rstd, &a.c_hat,
                       &a.rstd_c, &a.cs, &a.kh.mask, &a.kc.mask, &a.in_stats}) {
      *r = r->at(st, t);
    }
    return a;
  }
};

// Row r of one step forward.
template <typename T> void forward_row(const Gates& s, const Forward<T>& a, int64_t r) {
  const int64_t H = s.H, G = s.S + 1, fo = s.f(), go = s.g(), oo = s.o(), po = s.peep_o();
  T *x = a.acts[r], *cn = a.c_new[r], *tc = a.tanh_c[r], *ho = a.h[r];
  const T *q = a.prod[r], *b = a.base[r], *cp = a.c[r], *hp = a.h_prev[r];
  auto zone_h = [&](auto L, int64_t j, auto h) {  // h' or, with zoneout, lerp(h', h<t-1>, keep)
    return a.kh.on() ? h + a.kh.at(L, r, j) * (L.load(hp + j) - h) : h;
  };
  if (!a.gain && !a.in_gain) {  // one pass for the add
    each<T>(G * H, [&](auto L, int64_t j) { L.store(L.load(b + j) + L.load(q + j), x + j); });
  } else {  // layer norm: each gate's block normalised apart, its statistics first
    T* xh = a.norm[r];
    for (int64_t k = 0; k < G; ++k) {
      const int64_t o = k * H;
      T m_in = 0, r_in = 1, m_q = 0, r_q = 1;
      if (a.in_gain) {
        std::tie(m_in, r_in) = moments(b + o, H);
        a.in_stats[r][k] = m_in, a.in_stats[r][G + k] = r_in;
      }
      if (a.gain) std::tie(m_q, r_q) = moments(q + o, H), a.rstd[r][k] = r_q;
      each<T>(H, [&](auto L, int64_t j) {
        using U = typename decltype(L)::U;
        U v = L.load(b + o + j), p = L.load(q + o + j);
        if (a.in_gain) {
          v = (v - U(m_in)) * U(r_in) * L.load(a.in_gain + o + j);
          if (a.in_bias) v = v + L.load(a.in_bias + o + j);
        }
        if (a.gain) {
          p = (p - U(m_q)) * U(r_q);
          L.store(p, xh + o + j);
          p = p * L.load(a.gain + o + j);
        }
        L.store(v + p, x + o + j);
      });
    }
  }
  const T* peep = a.peep;
  each<T>(H, [&](auto L, int64_t j) {
    using U = typename decltype(L)::U;
    const U c0 = L.load(cp + j);
    U f = L.load(x + fo + j);
    if (peep) f = f + L.load(peep + fo + j) * c0;
    f = sigmoid(f);
    const U g = tanh_(L.load(x + go + j));
    U c1;
    if (s.coupled) {
      c1 = g + f * (c0 - g);  // f ⋆ c + (1 - f) ⋆ g
    } else {
      U i = L.load(x + j);
      if (peep) i = i + L.load(peep + j) * c0;
      i = sigmoid(i);
      L.store(i, x + j);
      c1 = f * c0 + i * g;
    }
    L.store(f, x + fo + j);
    L.store(g, x + go + j);
    L.store(c1, cn + j);
    if (a.kc.on()) L.store(c1 + a.kc.at(L, r, j) * (c0 - c1), a.cs[r] + j);
    U o = L.load(x + oo + j);
    if (peep) o = o + L.load(peep + po + j) * c1;
    o = sigmoid(o);
    L.store(o, x + oo + j);
    if (!a.ln_w) {
      const U t = tanh_(c1);
      L.store(t, tc + j);
      L.store(zone_h(L, j, o * t), ho + j);
    }
  });
  if (a.ln_w) {  // h = o ⋆ tanh(LN(c'))
    T* ch = a.c_hat[r];
    const auto [mean, rstd] = moments(cn, H);
    a.rstd_c[r][0] = rstd;
    each<T>(H, [&](auto L, int64_t j) {
      using U = typename decltype(L)::U;
      const U c_hat = (L.load(cn + j) - U(mean)) * U(rstd);
      L.store(c_hat, ch + j);
      const U t = tanh_(c_hat * L.load(a.ln_w + j) + L.load(a.ln_b + j));
      L.store(t, tc + j);
      L.store(zone_h(L, j, L.load(x + oo + j) * t), ho + j);
    });
  }
}

template <typename T> struct Backward {
  Rows<T> d_h, d_c;  // of o ⋆ tanh([LN] c') (plus d_out's, if any), and of c' from later
  Rows<T> d_out;  // steps (may be dc_prev); the outputs' gradient, or none
  Rows<T> acts, c, tanh_c;  // the forward's activations, c<t-1>, tanh([LN] c')
  const T *peep, *ln_w, *gain;
  Rows<T> norm, rstd, c_hat, rstd_c;  // what the forward kept for layer norm
  Rows<T> d_gates, d_raw, dc_prev;  // of the pre-activations, of the recurrent product (layer
  // norm), of c<t-1>; the sums over rows of the gradients of the layer norm gain (G*H), ln_c's
  Rows<T> sums;  // weight and bias (H each), the bias and in_gain (G*H each), a row per thread
  bool bias;  // whether to sum d_gates, the bias's gradient
  KeepRows<T> kh, kc;  // zoneout: d_h and d_c split with keep, d_h's kept part left in d_h,
  // d_c's added to dc_prev; the input half's layer norm (Forward): its gain, the raw input
  const T* in_gain;  // half and the stats the forward kept, and where the raw input half's
  Rows<T> in_raw, in_stats, d_in;  // gradient goes (may be d_gates: written after its last read)
  Rows<T> c0;  // c<t-1> of rows r >= carried, which join at this step (c: c<t-1> of the others)
  int64_t carried;
  Backward at(const Steps& st, int64_t t) const {  // step t's rows of the sequence's buffers
    Backward a = *this;
    for (Rows<T>* r : {&a.d_out, &a.acts, &a.tanh_c, &a.norm, &a.rstd, &a.c_hat, &a.rstd_c,
                       &a.d_gates, &a.d_raw, &a.kh.mask, &a.kc.mask, &a.in_raw, &a.in_stats,
                       &a.d_in}) {
      *r = r->at(st, t);
    }
    return a;
  }
};

// Row r of one step backward (dc_prev but for zoneout's kept part).
template <typename T> void backward_row(const Gates& s, const Backward<T>& a, int64_t r) {
  const int64_t H = s.H, fo = s.f(), go = s.g(), oo = s.o(), po = s.peep_o();
  const T *dc = a.d_c[r], *x = a.acts[r], *tc = a.tanh_c[r];
  const T* cp = r < a.carried ? a.c[r] : a.c0[r];
  T *dh = a.d_h[r], *dout = a.d_out[r];
  auto d_h = [&](auto L, int64_t j) {  // d of h' (with zoneout, its part that h' got)
    const auto d = dout ? L.load(dh + j) + L.load(dout + j) : L.load(dh + j);
    return a.kh.on() ? d - d * a.kh.at(L, r, j) : d;
  };
  const T *peep = a.peep, *ln_w = a.ln_w;
  T *dg = a.d_gates[r], *dcp = a.dc_prev[r];
  T* acc = a.sums[at::get_thread_num()];  // this thread's sums: gain, then ln_c's weight, bias
  // layer norm of c: the row sums its backward needs, and d of LN(c') into ln_c's sums
  T mg = 0, mgx = 0, rstd = 0;
  const T* ch = ln_w ? a.c_hat[r] : nullptr;
  auto d_ln = [&](auto L, int64_t j) {  // d of LN(c')
    using U = typename decltype(L)::U;
    const U d = d_h(L, j) * L.load(x + oo + j), t = L.load(tc + j);
    return d - d * t * t;
  };
  if (ln_w) {
    rstd = a.rstd_c[r][0];
    T *sw = acc + (s.S + 1) * H, *sb = sw + H;
    auto [sg, sgx] = sums<T>(H, [&](auto L, int64_t j) {
      using U = typename decltype(L)::U;
      const U dl = d_ln(L, j), c_hat = L.load(ch + j);
      L.store(L.load(sw + j) + dl * c_hat, sw + j);
      L.store(L.load(sb + j) + dl, sb + j);
      const U gj = dl * L.load(ln_w + j);
      return std::array<U, 2>{gj, gj * c_hat};
    });
    mg = sg / H, mgx = sgx / H;
  }
  each<T>(H, [&](auto L, int64_t j) {
    using U = typename decltype(L)::U;
    const U o = L.load(x + oo + j), t = L.load(tc + j), d = d_h(L, j);
    const U dc_in = L.load(dc + j), keep_c = a.kc.on() ? a.kc.at(L, r, j) : U(0);
    U dcj = dc_in - dc_in * keep_c;
    if (ln_w) {
      const U g_ln = d_ln(L, j) * L.load(ln_w + j);
      dcj = dcj + U(rstd) * (g_ln - U(mg) - L.load(ch + j) * U(mgx));
    } else {
      const U dt = d * o;
      dcj = dcj + (dt - dt * t * t);
    }
    const U d_o = d * t * (o - o * o);
    if (peep) dcj = dcj + d_o * L.load(peep + po + j);
    const U f = L.load(x + fo + j), g = L.load(x + go + j), c0 = L.load(cp + j);
    U d_f, d_g, d_prev;
    if (s.coupled) {
      d_f = dcj * (c0 - g);
      d_g = dcj - dcj * f;
      d_f = d_f * (f - f * f);
      d_prev = dcj * f;
      if (peep) d_prev = d_prev + d_f * L.load(peep + fo + j);
    } else {
      const U i = L.load(x + j);
      U d_i = dcj * g;
      d_f = dcj * c0;
      d_g = dcj * i;
      d_i = d_i * (i - i * i);
      d_f = d_f * (f - f * f);
      d_prev = dcj * f;
      if (peep) d_prev = d_prev + d_i * L.load(peep + j) + d_f * L.load(peep + fo + j);
      L.store(d_i, dg + j);
    }
    d_g = d_g - d_g * g * g;
    L.store(d_f, dg + fo + j);
    L.store(d_g, dg + go + j);
    L.store(d_o, dg + oo + j);
    L.store(d_prev + dc_in * keep_c, dcp + j);  // with zoneout's kept part of d_c
    if (a.kh.on()) L.store(L.load(dh + j) * a.kh.at(L, r, j), dh + j);  // d_h's kept part
  });
  const int64_t G = s.S + 1;
  T *sd = acc + (G + 2) * H, *si = acc + (2 * G + 2) * H;  // this thread's sums of the bias's
  if (!a.gain && !a.in_gain) {  // and in_gain's gradients
    if (a.bias) {
      each<T>(G * H, [&](auto L, int64_t j) { L.store(L.load(sd + j) + L.load(dg + j), sd + j); });
    }
    return;
  }
  // layer norm: gates = LN(raw input half) ⋆ in_gain [+ in_bias] + LN(prod) ⋆ gain, each
  // gate's block apart; a layer norm's input gets rstd ⋆ (g - mean(g) - x̂ ⋆ mean(g ⋆ x̂)) from
  // g, the gradient of x̂ (gain applied). A first pass sums those means and the gains' and
  // the bias's gradients, a second writes d of prod into d_raw and of the raw input half into
  // d_in (which may be d_gates: each element is read before it is written)
  const T *xh = a.gain ? a.norm[r] : nullptr, *y = a.in_gain ? a.in_raw[r] : nullptr;
  for (int64_t k = 0; k < G; ++k) {
    const int64_t o = k * H;
    const T r_q = xh ? a.rstd[r][k] : 0;
    const T m_in = y ? a.in_stats[r][k] : 0, r_in = y ? a.in_stats[r][G + k] : 0;
    auto x_in = [&](auto L, int64_t j) {  // the input half's x̂, normalised again
      using U = typename decltype(L)::U;
      return (L.load(y + o + j) - U(m_in)) * U(r_in);
    };
    const auto [s_q, s_qx, s_in, s_inx] = sums<T, 4>(H, [&](auto L, int64_t j) {
      using U = typename decltype(L)::U;
      const U d = L.load(dg + o + j);
      U g_q(0), gx_q(0), g_in(0), gx_in(0);
      if (a.bias) L.store(L.load(sd + o + j) + d, sd + o + j);
      if (xh) {
        const U x = L.load(xh + o + j);
        g_q = d * L.load(a.gain + o + j), gx_q = g_q * x;
        L.store(L.load(acc + o + j) + d * x, acc + o + j);
      }
      if (y) {
        const U x = x_in(L, j);
        g_in = d * L.load(a.in_gain + o + j), gx_in = g_in * x;
        L.store(L.load(si + o + j) + d * x, si + o + j);
      }
      return std::array<U, 4>{g_q, gx_q, g_in, gx_in};
    });
    each<T>(H, [&](auto L, int64_t j) {
      using U = typename decltype(L)::U;
      const U d = L.load(dg + o + j);
      if (xh) {
        const U g = d * L.load(a.gain + o + j);
        L.store(U(r_q) * (g - U(s_q / H) - L.load(xh + o + j) * U(s_qx / H)), a.d_raw[r] + o + j);
      }
      if (y) {
        const U g = d * L.load(a.in_gain + o + j);
        L.store(U(r_in) * (g - U(s_in / H) - x_in(L, j) * U(s_inx / H)), a.d_in[r] + o + j);
      }
    });
  }
}

template <typename T> const T* vec(const c10::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return nullptr;
  TORCH_CHECK(t->is_contiguous(), "seqkit lstm step: a weight vector must be contiguous");
  return t->data_ptr<T>();
}

// rows a task takes when a loop over rows of this width is split over torch's threads
inline int64_t grain(int64_t width) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1));
}

// f(r) for rows 0 .. b split over torch's threads; a thread's rows r0 .. r1 first get
// before(r0, r1) and after them after(r0, r1) (the step's product, on the same thread)
constexpr auto nothing = [](int64_t, int64_t) {};
template <typename F, typename B = decltype(nothing), typename A = decltype(nothing)>
void rows(int64_t b, int64_t width, F&& f, B before = nothing, A after = nothing) {
  at::parallel_for(0, b, grain(width), [&](int64_t r0, int64_t r1) {
    before(r0, r1);
    for (int64_t r = r0; r < r1; ++r) f(r);
    after(r0, r1);
  });
}

// dst (N, M) = src (M, N) transposed, each with unit stride along its rows: 16 x 16 tiles
// (float32 on AVX-512: in registers, ATen's transpose_mxn), bands of 16 rows of src split
// over torch's threads. torch's copy of a transposed view goes element by element, 2.3-2.8x
// the time at a weight gradient's operands (docs/runs/ad_hoc_transposes.md).
void transpose_into(const at::Tensor& src, const at::Tensor& dst) {
  TORCH_CHECK(src.dim() == 2 && dst.dim() == 2 && dst.size(0) == src.size(1) &&
                  dst.size(1) == src.size(0) && src.scalar_type() == dst.scalar_type() &&
                  src.stride(1) == 1 && dst.stride(1) == 1,
              "seqkit transpose: dst must be src's shape transposed, both with unit-stride rows");
  constexpr int64_t kTile = 16;
  const int64_t M = src.size(0), N = src.size(1), ls = src.stride(0), ld = dst.stride(0);
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "seqkit_transpose", [&] {
    const scalar_t* s = src.data_ptr<scalar_t>();
    scalar_t* d = dst.data_ptr<scalar_t>();
    at::parallel_for(0, (M + kTile - 1) / kTile, grain(N * kTile), [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0 * kTile; i < std::min(M, b1 * kTile); i += kTile) {
        for (int64_t j = 0; j < N; j += kTile) {
          const int64_t m = std::min(kTile, M - i), n = std::min(kTile, N - j);
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 6  // (its tile of any size)
          at::vec::transpose_mxn<scalar_t>(s + i * ls + j, ls, d + j * ld + i, ld, int(m), int(n));
#else
          for (int64_t a = 0; a < m; ++a) {
            for (int64_t b = 0; b < n; ++b) d[(j + b) * ld + i + a] = s[(i + a) * ls + j + b];
          }
#endif
        }
      }
    });
  });
}

// -- the time loop ----------------------------------------------------------------------------

// x @ W.T for the loop's weight W (out, in), as lstm.py's _operand chose: 2, W packed here into
// blocks of kCols of its rows, each block (in, width) row-major, for oneDNN's brgemm kernel
// (float32 where torch has it, AVX-512 builds: kBrgemm), which each thread runs on its rows of
// x into the output in place (at C1 sizes, 32 rows, 12-13% less time a product than oneDNN's
// linear through the dispatcher, which allocates its output and looks up its primitive at
// every call: about 20 us a call; docs/runs/ad_hoc_products_and_faults.md);
// 1, oneDNN's linear on its reordered W; 0, at::mm on W.T (in, out), a transposed copy
#if defined(CPUBLAS_BRGEMM_F32F32F32) && defined(CPU_CAPABILITY_AVX512)
constexpr bool kBrgemm = true;
#else
constexpr bool kBrgemm = false;
#endif

struct Product {
  static constexpr int64_t kCols = 64;
  at::Tensor w;
  int64_t how = 0, K = 0, N = 0;
  Product(const Opt& weight, int64_t how_) : how(how_) {
    if (!has(weight)) return;
    w = *weight;
    if (how != 2) return;
    TORCH_CHECK(kBrgemm && w.scalar_type() == at::kFloat, "seqkit lstm: no brgemm kernel");
    const at::Tensor b = weight->t();  // (K, N)
    K = b.size(0), N = b.size(1);
    w = at::empty({K * N}, b.options());
    for (int64_t n0 = 0; n0 < N; n0 += kCols) {
      const int64_t width = std::min(kCols, N - n0);
      const at::Tensor block = w.narrow(0, n0 * K, K * width).view({K, width});
      if (weight->stride(1) == 1) {  // W's rows n0 .. n0 + width, transposed
        transpose_into(weight->narrow(0, n0, width), block);
      } else {
        block.copy_(b.narrow(1, n0, width));
      }
    }
  }
  bool packed() const { return how == 2; }
  at::Tensor linear(const at::Tensor& x) const {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                           const std::optional<at::Tensor>&, c10::string_view,
                                           c10::List<std::optional<at::Scalar>>,
                                           std::optional<c10::string_view>)>();
    return op.call(x, w, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(),
                   std::nullopt);
  }
  void into(at::Tensor out, const at::Tensor& x) const {  // out = x @ W.T
    if (how == 2) {
      at::parallel_for(0, x.size(0), 16, [&](int64_t r0, int64_t r1) { rows(out, x, r0, r1); });
    } else if (how == 1) {
      out.copy_(linear(x));
    } else {
      at::mm_out(out, x, w);
    }
  }
  // rows r0 .. r1 of out = those of x @ W.T, packed (how 2): one thread's share
  void rows(const at::Tensor& out, const at::Tensor& x, int64_t r0, int64_t r1) const {
    TORCH_CHECK(x.stride(1) == 1 && out.stride(1) == 1, "seqkit lstm: rows must be contiguous");
    const int64_t lda = x.stride(0), ldc = out.stride(0);
    const float *a = x.data_ptr<float>() + r0 * lda, *b = w.data_ptr<float>();
    float* c = out.data_ptr<float>() + r0 * ldc;
    for (int64_t n0 = 0; n0 < N; n0 += kCols) {
      const int64_t width = std::min(kCols, N - n0);
#if defined(CPUBLAS_BRGEMM_F32F32F32)
      at::native::cpublas::brgemm(r1 - r0, width, K, lda, width, ldc, false, a, b + n0 * K,
                                  c + n0, false);
#endif
    }
  }
  // x @ W.T: packed, into the first rows of buf (B, out); else a new tensor
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& buf) const {
    if (how != 2) return how == 1 ? linear(x) : at::mm(x, w);
    at::Tensor out = buf.narrow(0, 0, x.size(0));
    into(out, x);
    return out;
  }
  at::Tensor buffer(int64_t rows, const at::Tensor& like) const {  // buf for operator()
    return how == 2 ? at::empty({rows, N}, like.options()) : at::Tensor();
  }
};

// zoneout's keep for step t: a 0/1 mask (training), the rate (evaluation), or none
struct Keep {
  Opt mask;
  std::optional<double> rate;
  bool any() const { return has(mask) || rate.has_value(); }
  at::Tensor lerp(at::Tensor out, const at::Tensor& x, const at::Tensor& old,
                  const Steps& st, int64_t t) const {  // lerp(x, old, keep) into out
    return has(mask) ? at::lerp_out(out, x, old, st(*mask, t))
                     : at::lerp_out(out, x, old, at::Scalar(*rate));
  }
  at::Tensor times(const at::Tensor& d, const Steps& st, int64_t t) const {  // d ⋆ keep
    return has(mask) ? d * st(*mask, t) : d * *rate;
  }
  double r(bool on = true) const { return on && rate ? *rate : -1.0; }  // the row math's rate
};

// The forward over all steps. Buffers (N, *) packed as lstm.py allocates them; the state of
// the active rows grows (reverse) from h0, c0 or shrinks, the ended rows' going to h_n, c_n.
void forward_loop(std::vector<int64_t> batch_sizes, bool reverse, at::Tensor acts,
                  at::Tensor base, Opt raw, at::Tensor w, int64_t w_how, Opt gain, Opt peep,
                  Opt ln_w, Opt ln_b, bool coupled, at::Tensor c_new, at::Tensor cs,
                  at::Tensor tanh_cs, at::Tensor hs, at::Tensor h_new, Opt h_raw, Opt w_hr,
                  int64_t w_hr_how, Opt rstd, Opt c_hat, Opt rstd_c, at::Tensor h0,
                  at::Tensor c0, at::Tensor h_n, at::Tensor c_n, Opt mask, Opt keep_h,
                  std::optional<double> rate_h, Opt keep_c, std::optional<double> rate_c,
                  Opt in_gain, Opt in_bias, Opt in_stats) {
  const Steps st(std::move(batch_sizes));
  const Product product(w, w_how), project(w_hr, w_hr_how);
  const at::Tensor prod_buf = product.buffer(h0.size(0), acts);
  const Keep kh{keep_h, rate_h}, kc{keep_c, rate_c};
  const bool kh_row = kh.any() && !has(w_hr);  // h's zoneout in the row math (else after the
  at::Tensor h = h0, c = c0;  // projection); the state of the active rows
  auto carry = [&](int64_t b) {
    const int64_t n = h.size(0);
    if (b > n) {  // rows joining start from the initial state
      h = at::cat({h, h0.narrow(0, n, b - n)});
      c = at::cat({c, c0.narrow(0, n, b - n)});
    } else if (b < n) {  // rows past b have ended: their state is final
      h_n.narrow(0, b, n - b).copy_(h.narrow(0, b, n - b));
      c_n.narrow(0, b, n - b).copy_(c.narrow(0, b, n - b));
      h = h.narrow(0, 0, b);
      c = c.narrow(0, 0, b);
    }
  };
  const Gates s{c0.size(1), coupled ? 2 : 3, coupled};
  TORCH_CHECK(acts.size(1) == (s.S + 1) * s.H, "seqkit lstm step: gate width");
  // o ⋆ tanh([LN] c'), or with zoneout in the row math h itself
  const at::Tensor out = kh_row ? hs : has(h_raw) ? *h_raw : h_new;
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "seqkit_lstm_forward", [&] {
    using T = scalar_t;  // the row math's arguments, each buffer's rows of step t by at(st, t)
    const Forward<T> all{Rows<T>(acts), Rows<T>(), Rows<T>(base), vec<T>(gain), vec<T>(peep),
                         vec<T>(ln_w), vec<T>(ln_b), Rows<T>(), Rows<T>(c_new),
                         Rows<T>(tanh_cs), Rows<T>(out), Rows<T>(raw), Rows<T>(rstd),
                         Rows<T>(c_hat), Rows<T>(rstd_c), Rows<T>(), Rows<T>(cs),
                         KeepRows<T>{kh_row ? Rows<T>(kh.mask) : Rows<T>(), T(kh.r(kh_row))},
                         KeepRows<T>{Rows<T>(kc.mask), T(kc.r())}, vec<T>(in_gain),
                         vec<T>(in_bias), Rows<T>(in_stats)};
    for (int64_t t = st.first(reverse); st.in(t); t += st.next(reverse)) {
      const int64_t b = st.bs[t];
      carry(b);
      const at::Tensor hd = has(mask) ? h * mask->narrow(0, 0, b) : h;
      Forward<T> a = all.at(st, t);  // W_hh h: packed, each thread its rows' before their math
      const at::Tensor prod = product.packed() ? prod_buf : product(hd, prod_buf);
      a.prod = Rows<T>(prod), a.c = Rows<T>(c), a.h_prev = Rows<T>(h);
      rows(b, acts.size(1), [&](int64_t r) { forward_row<T>(s, a, r); }, [&](int64_t r0,
                                                                              int64_t r1) {
        if (product.packed()) product.rows(prod_buf, hd, r0, r1);
      });
      at::Tensor hn = st(out, t);
      if (has(w_hr)) {
        project.into(st(h_new, t), hn);
        hn = st(h_new, t);
      }
      h = kh.any() && !kh_row ? kh.lerp(st(hs, t), hn, h, st, t) : hn;
      c = st(kc.any() ? cs : c_new, t);
    }
  });
  carry(0);
}

// The backward over all steps, last first: dh, dc (B, *) come in as the gradients of the final
// states and leave as those of the initial ones. d_hs (N, P) is the outputs' gradient. Returns
// the gradients of the layer norm gain, of ln_c's weight and bias, if ``bias`` of the bias,
// and of in_gain, summed over the rows in the loop (undefined where not asked for); d_in gets
// the raw input half's.
std::vector<at::Tensor> backward_loop(
    std::vector<int64_t> batch_sizes, bool reverse, at::Tensor d_hs, at::Tensor dh,
    at::Tensor dc, at::Tensor acts, at::Tensor cs, at::Tensor c0, at::Tensor tanh_cs, Opt peep,
    Opt ln_w,
    Opt gain, Opt norm, Opt rstd, Opt c_hat, Opt rstd_c, bool coupled, at::Tensor d_gates,
    Opt d_raw, Opt d_h_new, at::Tensor w_t, int64_t w_how, Opt w_hr_t, int64_t w_hr_how,
    Opt mask, Opt keep_h, std::optional<double> rate_h, Opt keep_c,
    std::optional<double> rate_c, bool bias, Opt in_gain, Opt in_raw, Opt in_stats, Opt d_in) {
  const Steps st(std::move(batch_sizes));
  const int64_t H = c0.size(1), W = acts.size(1);
  Opt sums;  // a row per thread: the gain's (W), ln_c weight's and bias's (H each), bias's and
  if (has(gain) || has(ln_w) || bias || has(in_gain)) {  // in_gain's (W each)
    sums = at::zeros({at::get_num_threads(), 3 * W + 2 * H}, acts.options());
  }
  const Product product(w_t, w_how), project(w_hr_t, w_hr_how);
  const at::Tensor project_buf = project.buffer(dh.size(0), acts);
  const Keep kh{keep_h, rate_h}, kc{keep_c, rate_c};
  const bool kh_row = kh.any() && !has(w_hr_t);  // as in forward_loop
  const Gates s{H, coupled ? 2 : 3, coupled};
  TORCH_CHECK(W == (s.S + 1) * s.H, "seqkit lstm step: gate width");
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "seqkit_lstm_backward", [&] {
    using T = scalar_t;  // the row math's arguments, each buffer's rows of step t by at(st, t)
    // without zoneout of h or the projection, the row math adds d_hs's rows to dh itself
    const bool fold = !kh.any() && !has(w_hr_t) && d_hs.stride(1) == 1;
    const Rows<T> dh_rows(dh), mask_rows(mask);  // recurrent dropout's (B, P)
    const int64_t P = dh.size(1);
    const Backward<T> all{Rows<T>(), Rows<T>(dc), fold ? Rows<T>(d_hs) : Rows<T>(),
                          Rows<T>(acts), Rows<T>(),
                          Rows<T>(tanh_cs), vec<T>(peep), vec<T>(ln_w), vec<T>(gain),
                          Rows<T>(norm), Rows<T>(rstd), Rows<T>(c_hat), Rows<T>(rstd_c),
                          Rows<T>(d_gates), Rows<T>(d_raw), Rows<T>(dc), Rows<T>(sums), bias,
                          KeepRows<T>{kh_row ? Rows<T>(kh.mask) : Rows<T>(), T(kh.r(kh_row))},
                          KeepRows<T>{Rows<T>(kc.mask), T(kc.r())}, vec<T>(in_gain),
                          Rows<T>(in_raw), Rows<T>(in_stats), Rows<T>(d_in), Rows<T>(c0), 0};
    for (int64_t t = st.first(!reverse); st.in(t); t += st.next(!reverse)) {
      const int64_t b = st.bs[t];
      const at::Tensor dh_b = dh.narrow(0, 0, b);
      // d of h (the row math splits it with keep_h, and dc's with keep_c), in rows of unit
      at::Tensor d_h = fold ? dh_b : at::empty_like(dh_b), dh_kept;  // stride whatever d_hs's
      if (!fold) at::add_out(d_h, dh_b, st(d_hs, t));  // layout
      if (kh.any() && !kh_row) {  // zoneout before the projection: h = lerp(h', h, keep)
        dh_kept = kh.times(d_h, st, t);  // splits d
        d_h = d_h - dh_kept;
      }
      if (has(w_hr_t)) {  // of o ⋆ tanh(c), through the projection
        st(*d_h_new, t).copy_(d_h);
        d_h = project(d_h, project_buf);
      } else if (kh_row) {
        dh_kept = d_h;  // the row math leaves d_h ⋆ keep_h in it
      }
      Backward<T> a = all.at(st, t);
      a.d_h = Rows<T>(d_h);
      if (const int64_t tp = t - st.next(reverse); st.in(tp)) {  // c<t-1>: the carried c of the
        a.c = Rows<T>(cs).at(st, tp), a.carried = st.bs[tp];  // step before, c0 where none
      }
      const at::Tensor d_prod = st(has(gain) ? *d_raw : d_gates, t);  // dh = d_prod @ W_hh:
      rows(b, W, [&](int64_t r) { backward_row<T>(s, a, r); }, nothing,  // packed, each thread
           [&](int64_t r0, int64_t r1) {  // its rows' after their math, times the mask
             if (!product.packed()) return;
             product.rows(dh_b, d_prod, r0, r1);
             for (int64_t r = r0; mask_rows && r < r1; ++r) {
               each<T>(P, [&](auto L, int64_t j) {
                 L.store(L.load(dh_rows[r] + j) * L.load(mask_rows[r] + j), dh_rows[r] + j);
               });
             }
           });
      if (!product.packed()) {
        product.into(dh_b, d_prod);
        if (has(mask)) dh_b.mul_(mask->narrow(0, 0, b));
      }
      if (dh_kept.defined()) dh_b.add_(dh_kept);
    }
  });
  if (!has(sums)) return std::vector<at::Tensor>(5);
  const at::Tensor total = sums->sum(0);
  return {has(gain) ? total.narrow(0, 0, W) : at::Tensor(),
          has(ln_w) ? total.narrow(0, W, H) : at::Tensor(),
          has(ln_w) ? total.narrow(0, W + H, H) : at::Tensor(),
          bias ? total.narrow(0, W + 2 * H, W) : at::Tensor(),
          has(in_gain) ? total.narrow(0, 2 * W + 2 * H, W) : at::Tensor()};
}

// -- layer norm over a whole sequence, and column sums ------------------------------------------

// Row loop over (N, *) with per-thread accumulators (threads, A, W), summed after: f(r, acc).
// Each thread sums blocks of 64 rows apart and adds each block's sums to its total: a row at
// a time, a float32 sum's rounding error would grow with N.
template <typename T, typename F>
at::Tensor accumulate(int64_t n, int64_t width, int64_t A, const at::Tensor& like, F&& f) {
  constexpr int64_t kBlock = 64;
  const int64_t size = A * width;
  auto acc = at::zeros({at::get_num_threads(), 2, size}, like.options());
  at::parallel_for(0, n, grain(width), [&](int64_t r0, int64_t r1) {
    T *total = acc[at::get_thread_num()].data_ptr<T>(), *block = total + size;
    for (int64_t r = r0; r < r1; r += kBlock) {
      for (int64_t q = r; q < std::min(r + kBlock, r1); ++q) f(q, block);
      each<T>(size, [&](auto L, int64_t j) {
        using U = typename decltype(L)::U;
        L.store(L.load(total + j) + L.load(block + j), total + j);
        L.store(U(0), block + j);
      });
    }
  });
  return acc.select(1, 0).sum(0).view({A, width});
}

// cells.gate_norm over packed rows: each gate's block of x (N, G*H) layer-normalised, times
// gain, plus bias, into out; each block's mean and 1 / std (N, G) kept for the backward
void gate_norm_forward(at::Tensor x, at::Tensor gain, Opt bias, at::Tensor out, at::Tensor mean,
                       at::Tensor rstd) {
  const int64_t G = mean.size(1), H = x.size(1) / G;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "seqkit_gate_norm_forward", [&] {
    using T = scalar_t;
    const Rows<T> X(x), Y(out), M(mean), R(rstd);
    const T *w = gain.data_ptr<T>(), *b = vec<T>(bias);
    rows(x.size(0), x.size(1), [&](int64_t r) {
      for (int64_t k = 0; k < G; ++k) {
        const int64_t o = k * H;
        const T* xr = X[r] + o;
        const auto [mu, rs] = moments(xr, H);
        M[r][k] = mu, R[r][k] = rs;
        each<T>(H, [&](auto L, int64_t j) {
          using U = typename decltype(L)::U;
          U v = (L.load(xr + j) - U(mu)) * U(rs) * L.load(w + o + j);
          if (b) v = v + L.load(b + o + j);
          L.store(v, Y[r] + o + j);
        });
      }
    });
  });
}

// From d (N, G*H), the gradient of gate_norm_forward's out: that of x into dx, and those of
// gain and bias (G*H), summed over the rows, returned
std::vector<at::Tensor> gate_norm_backward(at::Tensor d, at::Tensor x, at::Tensor gain,
                                           at::Tensor mean, at::Tensor rstd, at::Tensor dx) {
  const int64_t G = mean.size(1), W = x.size(1), H = W / G;
  at::Tensor sums_;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "seqkit_gate_norm_backward", [&] {
    using T = scalar_t;
    const Rows<T> D(d), X(x), DX(dx), M(mean), R(rstd);
    const T* w = gain.data_ptr<T>();
    sums_ = accumulate<T>(x.size(0), W, 2, x, [&](int64_t r, T* acc) {
      for (int64_t k = 0; k < G; ++k) {
        const int64_t o = k * H;
        const T *xr = X[r] + o, *dr = D[r] + o, mu = M[r][k], rs = R[r][k];
        auto xh = [&](auto L, int64_t j) {
          using U = typename decltype(L)::U;
          return (L.load(xr + j) - U(mu)) * U(rs);
        };
        auto [sg, sgx] = sums<T>(H, [&](auto L, int64_t j) {
          using U = typename decltype(L)::U;
          const U g = L.load(dr + j) * L.load(w + o + j);
          return std::array<U, 2>{g, g * xh(L, j)};
        });
        const T mg = sg / H, mgx = sgx / H;
        each<T>(H, [&](auto L, int64_t j) {
          using U = typename decltype(L)::U;
          const U dj = L.load(dr + j), x_hat = xh(L, j);
          L.store(U(rs) * (dj * L.load(w + o + j) - U(mg) - x_hat * U(mgx)), DX[r] + o + j);
          L.store(L.load(acc + o + j) + dj * x_hat, acc + o + j);
          L.store(L.load(acc + W + o + j) + dj, acc + W + o + j);
        });
      }
    });
  });
  return {sums_[0], sums_[1]};
}

// (a ⋆ b).sum(0) and a.sum(0) of (N, W) tensors, in one pass
std::vector<at::Tensor> column_sums(at::Tensor a, at::Tensor b) {
  const int64_t W = a.size(1);
  at::Tensor sums_;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqkit_column_sums", [&] {
    using T = scalar_t;
    const Rows<T> A(a), B(b);
    sums_ = accumulate<T>(a.size(0), W, 2, a, [&](int64_t r, T* acc) {
      each<T>(W, [&](auto L, int64_t j) {
        const auto aj = L.load(A[r] + j);
        L.store(L.load(acc + j) + aj * L.load(B[r] + j), acc + j);
        L.store(L.load(acc + W + j) + aj, acc + W + j);
      });
    });
  });
  return {sums_[0], sums_[1]};
}

// -- zoneout's masks (seqkit/noise.py) ------------------------------------------------------

// out (any shape, contiguous): entry k is 1 where the top 32 bits of SplitMix64's output k + 1
// from seed are below threshold, else 0
void bernoulli(at::Tensor out, int64_t seed, int64_t threshold) {
  TORCH_CHECK(out.is_contiguous(), "seqkit bernoulli: out must be contiguous");
  const uint64_t s = uint64_t(seed), th = uint64_t(threshold);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "seqkit_bernoulli", [&] {
    scalar_t* p = out.data_ptr<scalar_t>();
    at::parallel_for(0, out.numel(), 32768, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        uint64_t z = s + uint64_t(k + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        p[k] = scalar_t(((z ^ (z >> 31)) >> 32) < th);
      }
    });
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_loop", &forward_loop, "the LSTM kernel's forward over all steps");
  m.def("backward_loop", &backward_loop, "the LSTM kernel's backward over all steps");
  m.def("gate_norm_forward", &gate_norm_forward, "cells.gate_norm over packed rows");
  m.def("gate_norm_backward", &gate_norm_backward, "gate_norm_forward's backward");
  m.def("column_sums", &column_sums, "(a * b).sum(0) and a.sum(0)");
  m.def("bernoulli", &bernoulli, "zoneout's 0/1 mask from SplitMix64");
  m.def("transpose_into", &transpose_into, "dst = src.T, both with unit-stride rows");
  m.attr("has_brgemm") = kBrgemm;  // whether float32 products can run on oneDNN's brgemm
}
