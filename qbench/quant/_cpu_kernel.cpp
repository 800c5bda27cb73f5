// Fused CPU kernels for the soft quantizer of Eq. 7 and its Eqs. 8-11 backward.
//
// Plain C ABI (no torch headers) so that it compiles in about a second; loaded with ctypes
// by kernels.py. One pass over memory per direction: forward reads x and writes y, backward
// reads x and dL/dy and writes dL/dx, with the alpha/beta/bias reductions done in the same pass.
//
// Work per element: with sorted biases and a steep sigmoid, every step further than
// z_cut / T from u = beta * x is 0 or 1 to the working precision. With k = #{b_j <= u},
// only the 2W steps k-W .. k+W-1 are evaluated, W being the smallest w with
// T * min_m (b_{m+w} - b_m) >= z_cut; the steps below the window contribute their exact
// (sequential) sum of heights, the ones above contribute 0. The truncation error of the
// output is at most sum(s) * exp(-z_cut) (sigmoid(-z) <= exp(-z), and the neglected terms
// are at least T * G_W apart from u). When 2W is not well below n, all n steps are evaluated.
//
// Elements are processed in blocks of BLK so that the inner loops run over elements and
// vectorise; reductions go through fixed-size chunks in double, so results do not depend
// on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t BLK = 256;
constexpr int64_t CHUNK = 16384;
constexpr double BIG = 1e30;

// exp(-z) for float as 2^(-z log2 e), branch-free so that loops over it vectorise. The
// polynomial for 2^f on [-1/2, 1/2] has relative error < 1e-7; rounding w = -z log2 e adds
// |z| * 6e-8 relative, i.e. < 1e-6 wherever a sigmoid is not saturated (|z| < 17).
inline float qnexp(float z) {
    float w = z * -1.44269504088896341f;
    // NaN-preserving clamp: keeps 2^n a normal number
    w = w > 126.0f ? 126.0f : w;
    w = w < -126.0f ? -126.0f : w;
    // round to nearest by the 1.5 * 2^23 trick (rintf/floorf would be libm calls)
    const float fx = (w + 12582912.0f) - 12582912.0f;
    const float f = w - fx;
    float p = 1.5337585e-4f;
    p = std::fma(p, f, 1.3399870e-3f);
    p = std::fma(p, f, 9.6185198e-3f);
    p = std::fma(p, f, 5.5503290e-2f);
    p = std::fma(p, f, 2.4022646e-1f);
    p = std::fma(p, f, 6.9314718e-1f);
    p = std::fma(p, f, 1.0f);
    const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// float64 keeps the libm exp: it is the precision reference path (gradcheck), not the fast one.
inline double qnexp(double z) { return std::exp(-z); }

template <typename S>
inline S sigm(S z) { return S(1) / (S(1) + qnexp(z)); }

// codes k = #{b_j <= u} (bucketize right=True) for sorted b: a vectorisable count for few
// biases, a branch-free binary search over b padded to a power of two (qs) otherwise.
template <typename S>
inline void codes(const S* u, int32_t* k, int64_t m, const S* b, int64_t n, const S* qs, int64_t npow) {
    if (n <= 8 || qs == nullptr) {
        for (int64_t i = 0; i < m; ++i) k[i] = 0;
        for (int64_t j = 0; j < n; ++j) {
            const S bj = b[j];
            for (int64_t i = 0; i < m; ++i) k[i] += (u[i] >= bj) ? 1 : 0;
        }
        return;
    }
    for (int64_t i = 0; i < m; ++i) k[i] = 0;
    for (int64_t h = npow / 2; h >= 1; h /= 2) {
        const int32_t hh = int32_t(h);
        for (int64_t i = 0; i < m; ++i) k[i] += (u[i] >= qs[k[i] + hh - 1]) ? hh : 0;
    }
    const int32_t nn = int32_t(n);
    for (int64_t i = 0; i < m; ++i) k[i] = k[i] > nn ? nn : k[i];
}

template <typename S>
std::vector<S> search_table(const S* b, int64_t n, int64_t* npow) {
    int64_t p = 1;
    while (p < n + 1) p *= 2;
    *npow = p;
    std::vector<S> q(p, S(BIG));
    for (int64_t j = 0; j < n; ++j) q[j] = b[j];
    return q;
}

template <typename S>
struct Params {
    const S* b;      // biases (n)
    const S* s;      // step heights (n)
    int64_t n;
    S alpha, beta, T, offset;
    int64_t W;       // window half-width; 0 = evaluate all n steps
    std::vector<S> bp, sp, cp;  // padded biases/heights (n + 2W), saturated prefix sums (n + 1)
    std::vector<S> qs;          // binary-search table (npow)
    int64_t npow = 1;

    Params(const S* b_, const S* s_, int64_t n_, double a, double be, double t, double o, double zcut)
        : b(b_), s(s_), n(n_), alpha(S(a)), beta(S(be)), T(S(t)), offset(S(o)), W(0) {
        bool sorted = true;
        for (int64_t j = 1; j < n; ++j) sorted = sorted && (b[j] >= b[j - 1]);
        if (!sorted || !(zcut > 0) || !std::isfinite(zcut) || n < 4) return;
        for (int64_t w = 1; 2 * w + 2 <= n; ++w) {
            double g = INFINITY;
            for (int64_t m = 0; m + w < n; ++m) g = std::fmin(g, double(b[m + w]) - double(b[m]));
            // small margin for the rounding of z = (u - b) * T in S
            if (double(T) * g >= zcut * (1.0 + 1e-5) + 1e-3) { W = w; break; }
        }
        if (W == 0) return;
        qs = search_table(b, n, &npow);
        bp.assign(n + 2 * W, S(0));
        sp.assign(n + 2 * W, S(0));
        for (int64_t p = 0; p < n + 2 * W; ++p) {
            int64_t m = p - W;
            bp[p] = m < 0 ? S(-BIG) : (m >= n ? S(BIG) : b[m]);
            sp[p] = (m < 0 || m >= n) ? S(0) : s[m];
        }
        // cp[k] = sum of heights strictly below the window of an element with code k,
        // summed in the same order as Eq. 7 written literally (each saturated sigmoid is 1).
        cp.assign(n + 1, S(0));
        for (int64_t k = 0; k <= n; ++k) {
            S acc = S(0);
            for (int64_t j = 0; j < k - W; ++j) acc = acc + s[j];
            cp[k] = acc;
        }
    }
};

template <typename S>
void forward_block(const Params<S>& P, const S* x, S* y, int64_t m) {
    S u[BLK], acc[BLK];
    const S beta = P.beta, T = P.T;
    for (int64_t i = 0; i < m; ++i) u[i] = x[i] * beta;
    if (P.W == 0) {
        for (int64_t i = 0; i < m; ++i) acc[i] = S(0);
        for (int64_t j = 0; j < P.n; ++j) {
            const S bj = P.b[j], sj = P.s[j];
#pragma omp simd
            for (int64_t i = 0; i < m; ++i) acc[i] = std::fma(sj, sigm<S>((u[i] - bj) * T), acc[i]);
        }
    } else {
        int32_t k[BLK];
        codes(u, k, m, P.b, P.n, P.qs.empty() ? nullptr : P.qs.data(), P.npow);
        const S* bp = P.bp.data();
        const S* sp = P.sp.data();
        const S* cp = P.cp.data();
        for (int64_t i = 0; i < m; ++i) acc[i] = cp[k[i]];
        for (int64_t j = 0; j < 2 * P.W; ++j) {
#pragma omp simd
            for (int64_t i = 0; i < m; ++i) {
                const int32_t p = k[i] + int32_t(j);
                acc[i] = std::fma(sp[p], sigm<S>((u[i] - bp[p]) * T), acc[i]);
            }
        }
    }
    const S o = P.offset, a = P.alpha;
    for (int64_t i = 0; i < m; ++i) y[i] = (acc[i] - o) * a;
}

// Backward of one block; adds the block's reduction terms to red (double):
// red[0] += sum g (ssum - o), red[1] += sum g dsum x, red[2 + j] += sum g d_j.
template <typename S>
void backward_block(const Params<S>& P, const S* g, const S* x, S* gx, int64_t m,
                    bool need_alpha, bool need_beta, bool need_biases, double* red) {
    S u[BLK], dsum[BLK], ssum[BLK];
    const S beta = P.beta, T = P.T;
    for (int64_t i = 0; i < m; ++i) { u[i] = x[i] * beta; dsum[i] = S(0); ssum[i] = S(0); }
    if (P.W == 0 || need_biases) {
        for (int64_t j = 0; j < P.n; ++j) {
            const S bj = P.b[j], sj = P.s[j];
            double rb = 0.0;
            if (need_biases) {
#pragma omp simd reduction(+ : rb)
                for (int64_t i = 0; i < m; ++i) {
                    const S sig = sigm<S>((u[i] - bj) * T);
                    const S d = sig * (S(1) - sig) * sj;
                    dsum[i] = dsum[i] + d;
                    ssum[i] = std::fma(sig, sj, ssum[i]);
                    rb += double(g[i]) * double(d);
                }
                red[2 + j] += rb;
            } else {
#pragma omp simd
                for (int64_t i = 0; i < m; ++i) {
                    const S sig = sigm<S>((u[i] - bj) * T);
                    dsum[i] = std::fma(sig * (S(1) - sig), sj, dsum[i]);
                    ssum[i] = std::fma(sig, sj, ssum[i]);
                }
            }
        }
    } else {
        int32_t k[BLK];
        codes(u, k, m, P.b, P.n, P.qs.empty() ? nullptr : P.qs.data(), P.npow);
        const S* bp = P.bp.data();
        const S* sp = P.sp.data();
        const S* cp = P.cp.data();
        for (int64_t i = 0; i < m; ++i) ssum[i] = cp[k[i]];
        for (int64_t j = 0; j < 2 * P.W; ++j) {
#pragma omp simd
            for (int64_t i = 0; i < m; ++i) {
                const int32_t p = k[i] + int32_t(j);
                const S sig = sigm<S>((u[i] - bp[p]) * T);
                dsum[i] = std::fma(sig * (S(1) - sig), sp[p], dsum[i]);
                ssum[i] = std::fma(sig, sp[p], ssum[i]);
            }
        }
    }
    const S scale = P.alpha * P.beta * T;
    if (gx != nullptr) {
        for (int64_t i = 0; i < m; ++i) gx[i] = (g[i] * dsum[i]) * scale;
    }
    if (need_alpha) {
        const S o = P.offset;
        double ra = 0.0;
#pragma omp simd reduction(+ : ra)
        for (int64_t i = 0; i < m; ++i) ra += double(g[i]) * double(ssum[i] - o);
        red[0] += ra;
    }
    if (need_beta) {
        double rb = 0.0;
#pragma omp simd reduction(+ : rb)
        for (int64_t i = 0; i < m; ++i) rb += double(g[i]) * double(dsum[i]) * double(x[i]);
        red[1] += rb;
    }
}

inline int threads_for(int64_t chunks, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return chunks < nthreads ? int(chunks < 1 ? 1 : chunks) : nthreads;
}

template <typename S>
void soft_forward(const S* x, S* y, int64_t N, const S* b, const S* s, int64_t n, double alpha,
                  double beta, double T, double offset, double zcut, int nthreads) {
    const Params<S> P(b, s, n, alpha, beta, T, offset, zcut);
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t end = std::min<int64_t>(N, (c + 1) * CHUNK);
        for (int64_t i0 = c * CHUNK; i0 < end; i0 += BLK) {
            forward_block(P, x + i0, y + i0, std::min<int64_t>(BLK, end - i0));
        }
    }
}

template <typename S>
void soft_backward(const S* g, const S* x, S* gx, int64_t N, const S* b, const S* s, int64_t n,
                   double alpha, double beta, double T, double offset, double zcut, int need_alpha,
                   int need_beta, int need_biases, double* red_out, int nthreads) {
    const Params<S> P(b, s, n, alpha, beta, T, offset, zcut);
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
    const int64_t R = 2 + n;
    std::vector<double> part(chunks * R, 0.0);
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t end = std::min<int64_t>(N, (c + 1) * CHUNK);
        double* red = part.data() + c * R;
        for (int64_t i0 = c * CHUNK; i0 < end; i0 += BLK) {
            backward_block(P, g + i0, x + i0, gx == nullptr ? nullptr : gx + i0,
                           std::min<int64_t>(BLK, end - i0), need_alpha != 0, need_beta != 0,
                           need_biases != 0, red);
        }
    }
    for (int64_t r = 0; r < R; ++r) red_out[r] = 0.0;
    for (int64_t c = 0; c < chunks; ++c)
        for (int64_t r = 0; r < R; ++r) red_out[r] += part[c * R + r];
}

template <typename S>
void hard_forward(const S* x, S* y, int64_t N, const S* b, int64_t n, const S* outv, double alpha,
                  double beta, int nthreads) {
    int64_t npow = 1;
    const std::vector<S> qs = search_table(b, n, &npow);
    const S a = S(alpha), be = S(beta);
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t end = std::min<int64_t>(N, (c + 1) * CHUNK);
        S u[BLK];
        int32_t k[BLK];
        for (int64_t i0 = c * CHUNK; i0 < end; i0 += BLK) {
            const int64_t m = std::min<int64_t>(BLK, end - i0);
            for (int64_t i = 0; i < m; ++i) u[i] = x[i0 + i] * be;
            codes(u, k, m, b, n, qs.data(), npow);
            for (int64_t i = 0; i < m; ++i) y[i0 + i] = outv[k[i]] * a;
        }
    }
}

}  // namespace

extern "C" {

void qb_soft_forward_f32(const float* x, float* y, int64_t N, const float* b, const float* s, int64_t n,
                         double alpha, double beta, double T, double offset, double zcut, int nthreads) {
    soft_forward<float>(x, y, N, b, s, n, alpha, beta, T, offset, zcut, nthreads);
}

void qb_soft_forward_f64(const double* x, double* y, int64_t N, const double* b, const double* s,
                         int64_t n, double alpha, double beta, double T, double offset, double zcut,
                         int nthreads) {
    soft_forward<double>(x, y, N, b, s, n, alpha, beta, T, offset, zcut, nthreads);
}

void qb_soft_backward_f32(const float* g, const float* x, float* gx, int64_t N, const float* b,
                          const float* s, int64_t n, double alpha, double beta, double T, double offset,
                          double zcut, int need_alpha, int need_beta, int need_biases, double* red,
                          int nthreads) {
    soft_backward<float>(g, x, gx, N, b, s, n, alpha, beta, T, offset, zcut, need_alpha, need_beta,
                         need_biases, red, nthreads);
}

void qb_soft_backward_f64(const double* g, const double* x, double* gx, int64_t N, const double* b,
                          const double* s, int64_t n, double alpha, double beta, double T, double offset,
                          double zcut, int need_alpha, int need_beta, int need_biases, double* red,
                          int nthreads) {
    soft_backward<double>(g, x, gx, N, b, s, n, alpha, beta, T, offset, zcut, need_alpha, need_beta,
                          need_biases, red, nthreads);
}

void qb_hard_forward_f32(const float* x, float* y, int64_t N, const float* b, int64_t n,
                        const float* outv, double alpha, double beta, int nthreads) {
    hard_forward<float>(x, y, N, b, n, outv, alpha, beta, nthreads);
}

void qb_hard_forward_f64(const double* x, double* y, int64_t N, const double* b, int64_t n,
                        const double* outv, double alpha, double beta, int nthreads) {
    hard_forward<double>(x, y, N, b, n, outv, alpha, beta, nthreads);
}

int qb_abi_version() { return 1; }

}  // extern "C"
