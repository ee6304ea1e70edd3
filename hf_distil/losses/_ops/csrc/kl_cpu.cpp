// KL(softmax(t/T) ‖ softmax(s/T)) of every row and its gradient scale·(q − p), in three passes over a row that
// stays in cache: the two maxima; both exponentials, their sums and Σ p·(log p − log q); the gradient.
// Built on first use by hf_distil/kl_kernel.py (torch.utils.cpp_extension), with ATen's vector types for the
// machine's CPU capability. Why a kernel: the same maths as torch ops takes ~19 passes over each row chunk and
// as many dispatches (hf_distil/fused_losses.py), 2.4-2.6x the time on 2 cores (benchmarks/kl_kernel.py).
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace {

using Vec = at::vec::Vectorized<float>;

// op over a vector's lanes (ATen's vec_reduce_all changed its signature between torch versions)
template <typename Op>
float lanes(const Vec& v, Op op, float init) {
  float x[Vec::size()];
  v.store(x);
  for (int64_t j = 0; j < Vec::size(); ++j) init = op(init, x[j]);
  return init;
}

// max over j of x[j] + b[j] (b may be null)
float row_max(const float* x, const float* b, int64_t n) {
  Vec m(-INFINITY);
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) {
    const Vec v = b ? Vec::loadu(x + i) + Vec::loadu(b + i) : Vec::loadu(x + i);
    m = at::vec::maximum(m, v);
  }
  float out = lanes(m, [](float a, float c) { return std::max(a, c); }, -INFINITY);
  for (; i < n; ++i) out = std::max(out, x[i] + (b ? b[i] : 0.f));
  return out;
}

// One row: s (student logits, overwritten by the gradient), t (teacher logits), their biases bs, bt (or null),
// p a scratch row for the teacher's exponentials. Returns the row's KL.
double kl_row(float* s, const float* t, const float* bs, const float* bt, float* p, int64_t n, float inv_t,
              double scale) {
  const float ms = row_max(s, bs, n), mt = row_max(t, bt, n);
  const Vec vinv(inv_t), vms(ms), vmt(mt);
  double zs = 0, zt = 0, a = 0;  // Σ e^xs, Σ e^xt, Σ e^xt (xt − xs), with xs = (s + bs − ms)/T, xt likewise
  // Each lane sums 8 elements in fp32, then the lanes go into doubles: the sums stay exact to ~1e-9.
  constexpr int64_t kBlock = 8 * Vec::size();
  const int64_t vectorised = n - n % Vec::size();
  int64_t i = 0;
  while (i < vectorised) {
    Vec bzs(0), bzt(0), ba(0);
    for (const int64_t stop = std::min(vectorised, i + kBlock); i < stop; i += Vec::size()) {
      Vec xs = Vec::loadu(s + i), xt = Vec::loadu(t + i);
      if (bs) xs = xs + Vec::loadu(bs + i);
      if (bt) xt = xt + Vec::loadu(bt + i);
      xs = (xs - vms) * vinv;
      xt = (xt - vmt) * vinv;
      const Vec es = xs.exp(), et = xt.exp();
      bzs = bzs + es;
      bzt = bzt + et;
      ba = ba + et * (xt - xs);
      es.store(s + i);
      et.store(p + i);
    }
    zs += lanes(bzs, std::plus<float>(), 0.f);
    zt += lanes(bzt, std::plus<float>(), 0.f);
    a += lanes(ba, std::plus<float>(), 0.f);
  }
  for (; i < n; ++i) {
    const float xs = (s[i] + (bs ? bs[i] : 0.f) - ms) * inv_t, xt = (t[i] + (bt ? bt[i] : 0.f) - mt) * inv_t;
    const float es = std::exp(xs), et = std::exp(xt);
    zs += es;
    zt += et;
    a += et * (xt - xs);
    s[i] = es;
    p[i] = et;
  }
  // Σ p (log p − log q) = Σ p (xt − xs) − log zt + log zs, since Σ p = 1.
  const float cs = static_cast<float>(scale / zs), ct = static_cast<float>(scale / zt);
  const Vec vcs(cs), vct(ct);
  for (i = 0; i < vectorised; i += Vec::size()) (Vec::loadu(s + i) * vcs - Vec::loadu(p + i) * vct).store(s + i);
  for (; i < n; ++i) s[i] = s[i] * cs - p[i] * ct;
  return a / zt - std::log(zt) + std::log(zs);
}

const float* row_or_null(const std::optional<at::Tensor>& bias, int64_t n) {
  if (!bias.has_value()) return nullptr;
  TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == n,
              "a bias is a contiguous fp32 vector of the vocabulary's size");
  return bias->data_ptr<float>();
}

at::Tensor kl_rows_and_gradient(at::Tensor s, const at::Tensor& t, const std::optional<at::Tensor>& bias_s,
                                const std::optional<at::Tensor>& bias_t, double temperature, double scale) {
  TORCH_CHECK(s.dim() == 2 && s.sizes() == t.sizes(), "s and t are (rows, V) logits of one shape");
  TORCH_CHECK(s.scalar_type() == at::kFloat && t.scalar_type() == at::kFloat, "s and t are fp32");
  TORCH_CHECK(s.is_contiguous() && t.is_contiguous(), "s and t are contiguous");
  const int64_t rows = s.size(0), n = s.size(1);
  const float *bs = row_or_null(bias_s, n), *bt = row_or_null(bias_t, n);
  at::Tensor kl = at::empty({rows}, s.options().dtype(at::kDouble));
  float* S = s.data_ptr<float>();
  const float* T = t.data_ptr<float>();
  double* K = kl.data_ptr<double>();
  const float inv_t = static_cast<float>(1.0 / temperature);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(n);  // the teacher's exponentials of one row: in cache, never written to memory
    for (int64_t r = begin; r < end; ++r) K[r] = kl_row(S + r * n, T + r * n, bs, bt, p.data(), n, inv_t, scale);
  });
  return kl;
}

}  // namespace

TORCH_LIBRARY(hf_distil, m) {
  m.def(
      "kl_rows_and_gradient(Tensor(a!) s, Tensor t, Tensor? bias_s, Tensor? bias_t, float temperature, "
      "float scale) -> Tensor");
  m.impl("kl_rows_and_gradient", c10::DispatchKey::CPU, TORCH_FN(kl_rows_and_gradient));
}
