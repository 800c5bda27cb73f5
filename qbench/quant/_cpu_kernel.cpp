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
    // NaN-preserving clamp to |w| <= 100: keeps 2^w, the sigmoid and its derivative far from
    // denormals (which cost ~100x per operation); sigmoid(-z) is then >= 2^-100 instead of
    // e^-z, an absolute difference below 1e-30
    w = w > 100.0f ? 100.0f : w;
    w = w < -100.0f ? -100.0f : w;
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

// The loops over the elements of a block live in small functions with __restrict pointers:
// that is what lets the compiler vectorise them (with gathers for the table look-ups).
#define QB_R __restrict

template <typename S>
inline void count_step(const S* QB_R u, int32_t* QB_R k, int64_t m, S bj) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) k[i] += (u[i] >= bj) ? 1 : 0;
}

template <typename S>
inline void search_step(const S* QB_R u, int32_t* QB_R k, int64_t m, const S* QB_R qs, int32_t h) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) k[i] += (u[i] >= qs[k[i] + h - 1]) ? h : 0;
}

// codes k = #{b_j <= u} (bucketize right=True) for sorted b: a vectorisable count for few
// biases, a branch-free binary search over b padded to a power of two (qs) otherwise.
template <typename S>
inline void codes(const S* u, int32_t* QB_R k, int64_t m, const S* b, int64_t n, const S* qs, int64_t npow) {
    for (int64_t i = 0; i < m; ++i) k[i] = 0;
    if (n <= 8 || qs == nullptr) {
        for (int64_t j = 0; j < n; ++j) count_step(u, k, m, b[j]);
        return;
    }
    for (int64_t h = npow / 2; h >= 1; h /= 2) search_step(u, k, m, qs, int32_t(h));
    const int32_t nn = int32_t(n);
    for (int64_t i = 0; i < m; ++i) k[i] = k[i] > nn ? nn : k[i];
}

template <typename S>
inline void gather(const S* QB_R table, const int32_t* QB_R k, S* QB_R out, int64_t m) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) out[i] = table[k[i]];
}

// acc += s_j sigmoid(T (u - b_j)) over a block, one step j (dense) ...
template <typename S>
inline void fwd_dense_step(const S* QB_R u, S* QB_R acc, int64_t m, S bj, S sj, S T) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) acc[i] = std::fma(sj, sigm<S>((u[i] - bj) * T), acc[i]);
}

// ... or window position j of each element (biases/heights looked up at k + j)
template <typename S>
inline void fwd_window_step(const S* QB_R u, const int32_t* QB_R k, S* QB_R acc, int64_t m,
                            const S* QB_R bp, const S* QB_R sp, int32_t j, S T) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) {
        const int32_t p = k[i] + j;
        acc[i] = std::fma(sp[p], sigm<S>((u[i] - bp[p]) * T), acc[i]);
    }
}

template <typename S>
inline void bwd_dense_step(const S* QB_R u, S* QB_R dsum, S* QB_R ssum, int64_t m, S bj, S sj, S T) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) {
        const S sig = sigm<S>((u[i] - bj) * T);
        dsum[i] = std::fma(sig * (S(1) - sig), sj, dsum[i]);
        ssum[i] = std::fma(sig, sj, ssum[i]);
    }
}

template <typename S>
inline double bwd_dense_step_bias(const S* QB_R u, const S* QB_R g, S* QB_R dsum, S* QB_R ssum,
                                  int64_t m, S bj, S sj, S T) {
    double rb = 0.0;
#pragma omp simd reduction(+ : rb)
    for (int64_t i = 0; i < m; ++i) {
        const S sig = sigm<S>((u[i] - bj) * T);
        const S d = sig * (S(1) - sig) * sj;
        dsum[i] = dsum[i] + d;
        ssum[i] = std::fma(sig, sj, ssum[i]);
        rb += double(g[i]) * double(d);
    }
    return rb;
}

template <typename S>
inline void bwd_window_step(const S* QB_R u, const int32_t* QB_R k, S* QB_R dsum, S* QB_R ssum,
                            int64_t m, const S* QB_R bp, const S* QB_R sp, int32_t j, S T) {
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) {
        const int32_t p = k[i] + j;
        const S sig = sigm<S>((u[i] - bp[p]) * T);
        dsum[i] = std::fma(sig * (S(1) - sig), sp[p], dsum[i]);
        ssum[i] = std::fma(sig, sp[p], ssum[i]);
    }
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


#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define QB_AVX512 1

// With AVX-512 and tables of at most 64 entries (n <= 63, n + 2W <= 64), every table look-up
// is one two-register permute (two and a blend above 32 entries) instead of a gather.
struct Lut32 {
    __m512 r[4];
    bool wide = false;
    Lut32() { for (auto& v : r) v = _mm512_setzero_ps(); }
    Lut32(const float* t, int64_t len, float fill) {
        alignas(64) float buf[64];
        for (int64_t i = 0; i < 64; ++i) buf[i] = i < len ? t[i] : fill;
        for (int q = 0; q < 4; ++q) r[q] = _mm512_load_ps(buf + 16 * q);
        wide = len > 32;
    }
    __m512 operator()(__m512i idx) const {
        const __m512 lo = _mm512_permutex2var_ps(r[0], idx, r[1]);
        if (!wide) return lo;
        const __m512 hi = _mm512_permutex2var_ps(r[2], idx, r[3]);
        const __mmask16 upper = _mm512_cmpge_epi32_mask(idx, _mm512_set1_epi32(32));
        return _mm512_mask_blend_ps(upper, lo, hi);
    }
};

// sigmoid(z) = 1 / (1 + 2^(-z log2 e)), the same polynomial as qnexp
inline __m512 v_sigm(__m512 z) {
    __m512 w = _mm512_mul_ps(z, _mm512_set1_ps(-1.44269504088896341f));
    // min/max return their second operand for NaN: NaN propagates
    w = _mm512_min_ps(_mm512_set1_ps(100.0f), w);
    w = _mm512_max_ps(_mm512_set1_ps(-100.0f), w);
    const __m512 fx = _mm512_roundscale_ps(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(w, fx);
    __m512 p = _mm512_set1_ps(1.5337585e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3399870e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6185198e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503290e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022646e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 d = _mm512_add_ps(one, _mm512_scalef_ps(p, fx));
    // 1 / d by the 14-bit reciprocal and one Newton step (~1 ulp), cheaper than a division
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

struct Avx512Tables {
    bool ok = false;
    Lut32 qs, cp, bp, sp;
    int32_t npow = 1, n = 0, W = 0;
};

inline __m512i v_codes(const Avx512Tables& A, __m512 u) {
    __m512i k = _mm512_setzero_si512();
    for (int32_t h = A.npow / 2; h >= 1; h /= 2) {
        const __m512 v = A.qs(_mm512_add_epi32(k, _mm512_set1_epi32(h - 1)));
        const __mmask16 ge = _mm512_cmp_ps_mask(u, v, _CMP_GE_OQ);
        k = _mm512_mask_add_epi32(k, ge, k, _mm512_set1_epi32(h));
    }
    return _mm512_min_epi32(k, _mm512_set1_epi32(A.n));
}

inline __mmask16 tail_mask(int64_t i, int64_t m) {
    return m - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (m - i)) - 1u);
}

inline __m512d hsum_pd(__m512 v) {
    return _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                         _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}
#endif

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
#ifdef QB_AVX512
    Avx512Tables avx;
#endif

    Params(const S* b_, const S* s_, int64_t n_, double a, double be, double t, double o, double zcut)
        : b(b_), s(s_), n(n_), alpha(S(a)), beta(S(be)), T(S(t)), offset(S(o)), W(0) {
        bool sorted = true;
        for (int64_t j = 1; j < n; ++j) sorted = sorted && (b[j] >= b[j - 1]);
        if (!sorted || !(zcut > 0) || !std::isfinite(zcut) || n < 2) return;
        // A windowed sigmoid costs more than a dense one (its bias and height are looked up)
        // and the bucket search is extra: measured on AVX-512 at 4M elements, dense ~0.95 and
        // window ~1.2 + 1.6 per sigmoid (ms). Use the window only where that model says it pays.
        for (int64_t w = 1; 1.2 + 3.2 * double(w) < 0.95 * double(n); ++w) {
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
#ifdef QB_AVX512
        if constexpr (sizeof(S) == 4) {
            if (npow <= 64 && n + 2 * W <= 64) {
                avx.qs = Lut32(qs.data(), npow, float(BIG));
                avx.cp = Lut32(cp.data(), n + 1, 0.0f);
                avx.bp = Lut32(bp.data(), n + 2 * W, float(BIG));
                avx.sp = Lut32(sp.data(), n + 2 * W, 0.0f);
                avx.npow = int32_t(npow);
                avx.n = int32_t(n);
                avx.W = int32_t(W);
                avx.ok = true;
            }
        }
#endif
    }
};

#ifdef QB_AVX512
void forward_block_avx512(const Avx512Tables& A, const float* x, float* y, int64_t m, float beta,
                          float T, float offset, float alpha) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T);
    const __m512 vo = _mm512_set1_ps(offset), va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vb);
        const __m512i k = v_codes(A, u);
        __m512 acc = A.cp(k);
        for (int32_t j = 0; j < 2 * A.W; ++j) {
            const __m512i p = _mm512_add_epi32(k, _mm512_set1_epi32(j));
            const __m512 z = _mm512_mul_ps(_mm512_sub_ps(u, A.bp(p)), vT);
            acc = _mm512_fmadd_ps(A.sp(p), v_sigm(z), acc);
        }
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(_mm512_sub_ps(acc, vo), va));
    }
}

void forward_block_avx512_dense(const float* b, const float* s, int64_t n, const float* x, float* y,
                                int64_t m, float beta, float T, float offset, float alpha) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T);
    const __m512 vo = _mm512_set1_ps(offset), va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vb);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; ++j) {
            const __m512 z = _mm512_mul_ps(_mm512_sub_ps(u, _mm512_set1_ps(b[j])), vT);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), v_sigm(z), acc);
        }
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(_mm512_sub_ps(acc, vo), va));
    }
}

void backward_block_avx512(const Avx512Tables& A, const float* g, const float* x, float* gx, int64_t m,
                           float beta, float T, float offset, float scale, bool need_alpha,
                           bool need_beta, double* red, const float* dense_b = nullptr,
                           const float* dense_s = nullptr, int64_t dense_n = 0) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T), one = _mm512_set1_ps(1.0f);
    const __m512 vo = _mm512_set1_ps(offset), vs = _mm512_set1_ps(scale);
    __m512d ra = _mm512_setzero_pd(), rb = _mm512_setzero_pd();
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        const __m512 u = _mm512_mul_ps(xv, vb);
        __m512 ssum = _mm512_setzero_ps(), dsum = _mm512_setzero_ps();
        if (dense_b != nullptr) {
            for (int64_t j = 0; j < dense_n; ++j) {
                const __m512 sj = _mm512_set1_ps(dense_s[j]);
                const __m512 sig = v_sigm(_mm512_mul_ps(_mm512_sub_ps(u, _mm512_set1_ps(dense_b[j])), vT));
                dsum = _mm512_fmadd_ps(_mm512_mul_ps(sig, _mm512_sub_ps(one, sig)), sj, dsum);
                ssum = _mm512_fmadd_ps(sig, sj, ssum);
            }
        } else {
            const __m512i k = v_codes(A, u);
            ssum = A.cp(k);
            for (int32_t j = 0; j < 2 * A.W; ++j) {
                const __m512i p = _mm512_add_epi32(k, _mm512_set1_epi32(j));
                const __m512 sj = A.sp(p);
                const __m512 sig = v_sigm(_mm512_mul_ps(_mm512_sub_ps(u, A.bp(p)), vT));
                dsum = _mm512_fmadd_ps(_mm512_mul_ps(sig, _mm512_sub_ps(one, sig)), sj, dsum);
                ssum = _mm512_fmadd_ps(sig, sj, ssum);
            }
        }
        const __m512 gd = _mm512_mul_ps(gv, dsum);
        if (gx != nullptr) _mm512_mask_storeu_ps(gx + i, mk, _mm512_mul_ps(gd, vs));
        if (need_alpha) {
            // in double, like the generic path: g (ssum - o)
            const __m512 d = _mm512_sub_ps(ssum, vo);
            ra = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(gv)),
                                 _mm512_cvtps_pd(_mm512_castps512_ps256(d)), ra);
            ra = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(gv, 1)),
                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(d, 1)), ra);
        }
        if (need_beta) {
            rb = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(gd)),
                                 _mm512_cvtps_pd(_mm512_castps512_ps256(xv)), rb);
            rb = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(gd, 1)),
                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(xv, 1)), rb);
        }
    }
    red[0] += _mm512_reduce_add_pd(ra);
    red[1] += _mm512_reduce_add_pd(rb);
}

void hard_block_avx512(const Avx512Tables& A, const Lut32& out, const float* x, float* y, int64_t m,
                       float beta, float alpha) {
    const __m512 vb = _mm512_set1_ps(beta), va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vb);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(out(v_codes(A, u)), va));
    }
}
#endif

template <typename S>
void forward_block(const Params<S>& P, const S* QB_R x, S* QB_R y, int64_t m) {
#ifdef QB_AVX512
    if constexpr (sizeof(S) == 4) {
        if (P.avx.ok) return forward_block_avx512(P.avx, x, y, m, P.beta, P.T, P.offset, P.alpha);
        if (P.W == 0) return forward_block_avx512_dense(P.b, P.s, P.n, x, y, m, P.beta, P.T, P.offset, P.alpha);
    }
#endif
    S u[BLK], acc[BLK];
    const S beta = P.beta, T = P.T;
    for (int64_t i = 0; i < m; ++i) u[i] = x[i] * beta;
    if (P.W == 0) {
        for (int64_t i = 0; i < m; ++i) acc[i] = S(0);
        for (int64_t j = 0; j < P.n; ++j) fwd_dense_step(u, acc, m, P.b[j], P.s[j], T);
    } else {
        int32_t k[BLK];
        codes(u, k, m, P.b, P.n, P.qs.data(), P.npow);
        gather(P.cp.data(), k, acc, m);
        for (int64_t j = 0; j < 2 * P.W; ++j)
            fwd_window_step(u, k, acc, m, P.bp.data(), P.sp.data(), int32_t(j), T);
    }
    const S o = P.offset, a = P.alpha;
    for (int64_t i = 0; i < m; ++i) y[i] = (acc[i] - o) * a;
}

// Backward of one block; adds the block's reduction terms to red (double):
// red[0] += sum g (ssum - o), red[1] += sum g dsum x, red[2 + j] += sum g d_j.
template <typename S>
void backward_block(const Params<S>& P, const S* QB_R g, const S* QB_R x, S* QB_R gx, int64_t m,
                    bool need_alpha, bool need_beta, bool need_biases, double* red) {
#ifdef QB_AVX512
    if constexpr (sizeof(S) == 4) {
        if (P.avx.ok && !need_biases)
            return backward_block_avx512(P.avx, g, x, gx, m, P.beta, P.T, P.offset,
                                         P.alpha * P.beta * P.T, need_alpha, need_beta, red);
        if (P.W == 0 && !need_biases)
            return backward_block_avx512(P.avx, g, x, gx, m, P.beta, P.T, P.offset,
                                         P.alpha * P.beta * P.T, need_alpha, need_beta, red,
                                         P.b, P.s, P.n);
    }
#endif
    S u[BLK], dsum[BLK], ssum[BLK];
    const S beta = P.beta, T = P.T;
    for (int64_t i = 0; i < m; ++i) { u[i] = x[i] * beta; dsum[i] = S(0); }
    if (P.W == 0 || need_biases) {
        // per-bias reductions need every step: the dense form (biases are frozen by default)
        for (int64_t i = 0; i < m; ++i) ssum[i] = S(0);
        for (int64_t j = 0; j < P.n; ++j) {
            if (need_biases) red[2 + j] += bwd_dense_step_bias(u, g, dsum, ssum, m, P.b[j], P.s[j], T);
            else bwd_dense_step(u, dsum, ssum, m, P.b[j], P.s[j], T);
        }
    } else {
        int32_t k[BLK];
        codes(u, k, m, P.b, P.n, P.qs.data(), P.npow);
        gather(P.cp.data(), k, ssum, m);
        for (int64_t j = 0; j < 2 * P.W; ++j)
            bwd_window_step(u, k, dsum, ssum, m, P.bp.data(), P.sp.data(), int32_t(j), T);
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
#ifdef QB_AVX512
    if constexpr (sizeof(S) == 4) {
        if (npow <= 64) {
            Avx512Tables A;
            A.qs = Lut32(qs.data(), npow, float(BIG));
            A.npow = int32_t(npow);
            A.n = int32_t(n);
            const Lut32 out(outv, n + 1, 0.0f);
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
            for (int64_t c = 0; c < chunks; ++c) {
                const int64_t i0 = c * CHUNK, end = std::min<int64_t>(N, (c + 1) * CHUNK);
                hard_block_avx512(A, out, x + i0, y + i0, end - i0, be, a);
            }
            return;
        }
    }
#endif
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t end = std::min<int64_t>(N, (c + 1) * CHUNK);
        S u[BLK];
        int32_t k[BLK];
        for (int64_t i0 = c * CHUNK; i0 < end; i0 += BLK) {
            const int64_t m = std::min<int64_t>(BLK, end - i0);
            for (int64_t i = 0; i < m; ++i) u[i] = x[i0 + i] * be;
            codes(u, k, m, b, n, qs.data(), npow);
            gather(outv, k, u, m);
            for (int64_t i = 0; i < m; ++i) y[i0 + i] = u[i] * a;
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
