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
// On AVX-512 (float32, n <= 63, sorted biases) each element needs only one exponential: the
// sigmoids are rewritten around the nearest bias (see "one exponential per element" below),
// and step heights are grouped so that most steps cost five vector instructions.
//
// Elements are processed in blocks of BLK so that the inner loops run over elements and
// vectorise; reductions go through fixed-size chunks whose sums are added in double, so
// results do not depend on the thread count.

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
    // with the table size known at compile time: 16 entries need one register, no blend
    template <int K>
    __m512 at(__m512i idx) const {
        if constexpr (K == 16) return _mm512_permutexvar_ps(idx, r[0]);
        else if constexpr (K == 32) return _mm512_permutex2var_ps(r[0], idx, r[1]);
        else return (*this)(idx);
    }
};

// 2^clamp(-z log2 e, -lim, lim) = exp(-z) for |z| < lim ln 2, the same polynomial as qnexp
inline __m512 v_exp_neg(__m512 z, float lim) {
    __m512 w = _mm512_mul_ps(z, _mm512_set1_ps(-1.44269504088896341f));
    // min/max return their second operand for NaN: NaN propagates
    w = _mm512_min_ps(_mm512_set1_ps(lim), w);
    w = _mm512_max_ps(_mm512_set1_ps(-lim), w);
    const __m512 fx = _mm512_roundscale_ps(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(w, fx);
    __m512 p = _mm512_set1_ps(1.5337585e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3399870e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6185198e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503290e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022646e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, fx);
}

// 1 / d by the 14-bit reciprocal and one Newton step (~1 ulp), cheaper than a division
inline __m512 v_recip(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

// sigmoid(z) = 1 / (1 + 2^(-z log2 e))
inline __m512 v_sigm(__m512 z) {
    return v_recip(_mm512_add_ps(_mm512_set1_ps(1.0f), v_exp_neg(z, 100.0f)));
}

// Branch-free binary search k = #{q_j <= u} over a sorted table q of npow <= 64 entries (padded
// with BIG). The level that adds h compares with q[k + h - 1] where k is a multiple of 2h, so it
// looks up entry k / 2h of its own table of npow / 2h entries: one register and one permute
// for up to 16 entries (every level when npow <= 32), two above.
struct Search {
    Lut32 tab[6];
    Search() = default;
    Search(const float* q, int64_t npow) {
        float t[64];
        for (int64_t h = npow / 2, l = 0; h >= 1; h /= 2, ++l) {
            const int64_t size = npow / (2 * h);
            for (int64_t m = 0; m < size; ++m) t[m] = q[m * 2 * h + h - 1];
            tab[l] = Lut32(t, size, float(BIG));
        }
    }
    // NPOW (the table size) known at compile time: the loop unrolls, constants stay in registers
    template <int NPOW>
    __m512i find(__m512 u) const {
        constexpr int LOGN = NPOW >= 64 ? 6 : NPOW >= 32 ? 5 : NPOW >= 16 ? 4 : NPOW >= 8 ? 3 : NPOW >= 4 ? 2 : NPOW >= 2 ? 1 : 0;
        __m512i k = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int l = 0; l < LOGN; ++l) {
            const __m512i m = _mm512_srlv_epi32(k, _mm512_set1_epi32(LOGN - l));
            const __m512 v = (1 << l) <= 16 ? tab[l].at<16>(m) : tab[l].at<32>(m);
            k = _mm512_mask_add_epi32(k, _mm512_cmp_ps_mask(u, v, _CMP_GE_OQ), k, _mm512_set1_epi32(NPOW >> (l + 1)));
        }
        return k;
    }
};

// Bucket search of the hard quantizer: codes k = #{b_j <= u}.
struct Avx512Tables {
    Search search;
    int32_t n = 0;
};

template <int NPOW>
inline __m512i v_codes(const Avx512Tables& A, __m512 u) {
    return _mm512_min_epi32(A.search.find<NPOW>(u), _mm512_set1_epi32(A.n));  // u = +inf passes the padding
}

inline __mmask16 tail_mask(int64_t i, int64_t m) {
    return m - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (m - i)) - 1u);
}

// The alpha/beta reductions: float partial sums over at most 4 vectors (64 elements; the
// rounding error of 4-term sums is below 3 ulp of the sum of magnitudes), then double.
struct RedAcc {
    __m512 fa = _mm512_setzero_ps(), fb = _mm512_setzero_ps();
    __m512d da = _mm512_setzero_pd(), db = _mm512_setzero_pd();
    int count = 0;
    static __m512d widen(__m512 v) {
        return _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
    }
    void flush() {
        da = _mm512_add_pd(da, widen(fa));
        db = _mm512_add_pd(db, widen(fb));
        fa = fb = _mm512_setzero_ps();
        count = 0;
    }
    void add(bool need_alpha, __m512 ta1, __m512 ta2, bool need_beta, __m512 tb1, __m512 tb2) {
        if (need_alpha) fa = _mm512_fmadd_ps(ta1, ta2, fa);
        if (need_beta) fb = _mm512_fmadd_ps(tb1, tb2, fb);
        if (++count == 4) flush();
    }
    void finish(double* red) {
        flush();
        red[0] += _mm512_reduce_add_pd(da);
        red[1] += _mm512_reduce_add_pd(db);
    }
};

// ---- Soft quantizer on AVX-512: one exponential per element -------------------------------
//
// sigmoid(T (u - b_p)) = 1 / (1 + E_p) with E_p = exp(-T (u - b_p)) = e0 * C_p, where
// e0 = exp(-T (u - b_a)) for the bias b_a nearest to u (the anchor) and C_p = exp(T (b_p - b_a))
// depends on the biases only (a table indexed by a). Each further step then costs a multiply,
// an add and a reciprocal instead of a whole exponential.
// - z_a = (u - b_a) T is formed exactly as Eq. 7 written literally forms it, so the steepest
//   sigmoid (the one at the anchor) agrees with the reference; for the other steps the
//   exponent differs from the reference's by about eps |z_p|, and sigmoid'(z) |z| <= 0.23, so
//   the values differ by < 1e-7 (relative to the step height).
// - Range: e0 is clamped to 2^+-40 and C_p to 2^+-80, so E_p stays in 2^+-120 (no overflow,
//   no denormals). As b_a is the nearest bias, if e0 is clamped every step is more than
//   40 / log2(e) / T away from u and saturated; E_p then still lies beyond 2^+-40 on the right
//   side, and the sigmoid is within 2^-40 of 0 or 1. A clamped C_p likewise only touches
//   steps with |log2 E_p| > 40.
// - With a window (large n or large T), only the steps that can be within z_cut / T of an
//   input whose anchor is a are evaluated (a table of windows, one per anchor; the same
//   truncation bound as the generic path); the heights of the steps below are added from cp[a].
struct AnchorTables {
    bool ok = false;
    bool dense = true;
    int32_t n = 0, L = 0;
    std::vector<float> mid;  // midpoints (b_j + b_{j+1}) / 2: anchor a = #{mid_j <= u}
    Search qmid;             // the same, padded to npow with BIG, for the binary search
    Lut32 ba;                // b_a
    Lut32 cp;                // windowed: sum of the heights below the window of anchor a
    std::vector<Lut32> C;    // C[j](a) for loop position j (dense: step order[j]; windowed:
                             // step lo_a + j, C = 2^80 past n-1, i.e. sigmoid < 2^-40)
    // Heights. With at most two distinct heights h0, h1 the loop runs over the L0 steps of
    // height h0, then over the others, and sums plain sigmoids (no multiply per step);
    // otherwise each step's height is applied (dense: sd[j]; windowed: the table Sw[j](a)).
    bool classes = false;
    int32_t L0 = 0;
    float h0 = 0.0f, h1 = 0.0f;
    std::vector<float> sd;
    std::vector<Lut32> Sw;
    // Dense, and all biases within 40 / log2(e) / T of their middle c: the anchor is c for
    // every element (no search, and C_j = cf[j] are constants). |T (u - c)| <= 27.7 inside
    // the bias range; e0 is clamped to 2^+-80, so outside it E_j is still beyond 2^+-40.
    bool fixed = false;
    float c = 0.0f;
    std::vector<float> cf;
};

inline AnchorTables anchor_tables(const float* b, const float* s, int64_t n, float T, double zcut) {
    AnchorTables A;
    if (n < 1 || n > 63 || !(zcut > 0) || !std::isfinite(zcut)) return A;
    for (int64_t j = 1; j < n; ++j)
        if (!(b[j] >= b[j - 1])) return A;  // unsorted (or NaN) biases: the generic path
    A.n = int32_t(n);
    A.mid.resize(n > 1 ? n - 1 : 0);
    for (int64_t j = 0; j + 1 < n; ++j) A.mid[j] = float(0.5 * (double(b[j]) + double(b[j + 1])));
    // The window of anchor a: the steps within reach = z_cut / T (plus a margin for the
    // rounding of z in float) of the inputs whose anchor is a, u in [mid_{a-1}, mid_a).
    // Steps below it are saturated at 1, steps above at 0. All windows have the length of
    // the longest; shorter ones run on into real steps or, past the last, into C = 2^80.
    const double reach = (zcut * (1.0 + 1e-5) + 1e-3) / double(T);
    std::vector<int64_t> lo(n);
    int64_t L = 0;
    for (int64_t a = 0; a < n; ++a) {
        int64_t l = 0, h = n - 1;
        if (a > 0) while (double(b[l]) < double(A.mid[a - 1]) - reach) ++l;
        if (a < n - 1) while (double(b[h]) > double(A.mid[a]) + reach) --h;
        lo[a] = l;
        L = std::max<int64_t>(L, h - l + 1);
    }
    // a windowed step costs about 8/7 of a dense one (one more table look-up)
    A.dense = !(8 * L + 2 < 7 * n);
    A.L = A.dense ? int32_t(n) : int32_t(L);
    int64_t npow = 1;
    while (npow < n) npow *= 2;
    {
        std::vector<float> q(npow, float(BIG));
        std::copy(A.mid.begin(), A.mid.end(), q.begin());
        A.qmid = Search(q.data(), npow);
    }
    A.ba = Lut32(b, n, 0.0f);

    // height classes, and the order of the dense steps (class h0 first)
    std::vector<int64_t> order;
    A.h0 = s[0];
    A.h1 = s[0];
    bool two = true;
    for (int64_t j = 0; j < n; ++j) {
        if (s[j] == A.h0) continue;
        if (A.h1 == A.h0) A.h1 = s[j];
        two = two && (s[j] == A.h1);
    }
    const bool uniform = (A.h1 == A.h0);
    A.classes = A.dense ? two : uniform;
    if (A.dense) {
        for (int64_t j = 0; j < n; ++j) if (!A.classes || s[j] == A.h0) order.push_back(j);
        A.L0 = int32_t(order.size());
        for (int64_t j = 0; j < n; ++j) if (A.classes && s[j] != A.h0) order.push_back(j);
        for (int64_t j : order) A.sd.push_back(s[j]);
        if (!A.classes) A.L0 = A.L;
    } else {
        A.L0 = A.L;
    }

    const double log2e = 1.4426950408889634;
    if (A.dense && double(T) * (double(b[n - 1]) - double(b[0])) * log2e <= 80.0) {
        A.fixed = true;
        A.c = float(0.5 * (double(b[0]) + double(b[n - 1])));
        for (int32_t j = 0; j < A.L; ++j)
            A.cf.push_back(float(std::exp2(double(T) * (double(b[order[j]]) - double(A.c)) * log2e)));
    }
    float ctab[64], stab[64];
    for (int32_t j = 0; j < A.L; ++j) {
        for (int64_t a = 0; a < n; ++a) {
            const int64_t p = A.dense ? order[j] : lo[a] + j;
            if (p < 0 || p >= n) { ctab[a] = 0x1p80f; stab[a] = 0.0f; continue; }
            double c = double(T) * (double(b[p]) - double(b[a])) * log2e;
            c = std::fmax(-80.0, std::fmin(80.0, c));
            ctab[a] = float(std::exp2(c));
            stab[a] = s[p];
        }
        A.C.emplace_back(ctab, n, 1.0f);
        if (!A.dense && !A.classes) A.Sw.emplace_back(stab, n, 0.0f);
    }
    if (!A.dense) {
        for (int64_t a = 0; a < n; ++a) {
            float acc = 0.0f;  // summed in the order of Eq. 7 written literally
            for (int64_t q = 0; q < lo[a]; ++q) acc = acc + s[q];
            ctab[a] = acc;
        }
        A.cp = Lut32(ctab, n, 0.0f);
    }
    A.ok = true;
    return A;
}

template <int K>
inline __m512i v_anchor(const AnchorTables& A, __m512 u) {
    __m512i a = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    if (A.n <= 9) {
        for (int32_t j = 0; j + 1 < A.n; ++j)
            a = _mm512_mask_add_epi32(a, _mm512_cmp_ps_mask(u, _mm512_set1_ps(A.mid[j]), _CMP_GE_OQ), a, one);
        return a;
    }
    // n > 9: npow is K (10..16 -> 16, 17..32 -> 32, 33..63 -> 64)
    return _mm512_min_epi32(A.qmid.find<K>(u), _mm512_set1_epi32(A.n - 1));  // u = +inf passes the padding
}

// r0 (2 - d r0): the 14-bit reciprocal of d = 1 + e0 C and one Newton step, left unmultiplied
// so that summing plain sigmoids costs one FMA (acc += r0 t)
#define QB_STEP(C_)                                                                 \
    const __m512 d = _mm512_fmadd_ps(e0, (C_), one);                                \
    const __m512 r0 = _mm512_rcp14_ps(d);                                           \
    const __m512 t = _mm512_fnmadd_ps(d, r0, two);

template <int K, bool FIXED>
void forward_block_anchor(const AnchorTables& A, const float* x, float* y, int64_t m, float beta,
                          float T, float offset, float alpha) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T), one = _mm512_set1_ps(1.0f);
    const __m512 two = _mm512_set1_ps(2.0f);
    const __m512 vo = _mm512_set1_ps(offset), va = _mm512_set1_ps(alpha);
    const __m512 h0 = _mm512_set1_ps(A.h0), h1 = _mm512_set1_ps(A.h1);
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vb);
        const __m512i a = FIXED ? _mm512_setzero_si512() : v_anchor<K>(A, u);
        const __m512 e0 = FIXED ? v_exp_neg(_mm512_mul_ps(_mm512_sub_ps(u, _mm512_set1_ps(A.c)), vT), 80.0f)
                                : v_exp_neg(_mm512_mul_ps(_mm512_sub_ps(u, A.ba.at<K>(a)), vT), 40.0f);
        __m512 acc = A.dense ? _mm512_setzero_ps() : A.cp.at<K>(a);
        if (A.classes) {
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            for (int32_t j = 0; j < A.L0; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                a0 = _mm512_fmadd_ps(r0, t, a0);
            }
            for (int32_t j = A.L0; j < A.L; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                a1 = _mm512_fmadd_ps(r0, t, a1);
            }
            acc = _mm512_fmadd_ps(h1, a1, _mm512_fmadd_ps(h0, a0, acc));
        } else {
            for (int32_t j = 0; j < A.L; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                const __m512 sj = A.dense ? _mm512_set1_ps(A.sd[j]) : A.Sw[j].at<K>(a);
                acc = _mm512_fmadd_ps(_mm512_mul_ps(sj, r0), t, acc);
            }
        }
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(_mm512_sub_ps(acc, vo), va));
    }
}

template <int K, bool FIXED>
void backward_block_anchor(const AnchorTables& A, const float* g, const float* x, float* gx, int64_t m,
                           float beta, float T, float offset, float scale, bool need_alpha,
                           bool need_beta, double* red) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T), one = _mm512_set1_ps(1.0f);
    const __m512 two = _mm512_set1_ps(2.0f);
    const __m512 vo = _mm512_set1_ps(offset), vs = _mm512_set1_ps(scale);
    const __m512 h0 = _mm512_set1_ps(A.h0), h1 = _mm512_set1_ps(A.h1);
    RedAcc acc;
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        const __m512 u = _mm512_mul_ps(xv, vb);
        const __m512i a = FIXED ? _mm512_setzero_si512() : v_anchor<K>(A, u);
        const __m512 e0 = FIXED ? v_exp_neg(_mm512_mul_ps(_mm512_sub_ps(u, _mm512_set1_ps(A.c)), vT), 80.0f)
                                : v_exp_neg(_mm512_mul_ps(_mm512_sub_ps(u, A.ba.at<K>(a)), vT), 40.0f);
        __m512 ssum = A.dense ? _mm512_setzero_ps() : A.cp.at<K>(a), dsum = _mm512_setzero_ps();
        if (A.classes) {
            // per class: s0 = sum sigmoid, d0 = sum sigmoid (1 - sigmoid) = sum (r - r^2)
            __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
            __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
            for (int32_t j = 0; j < A.L0; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                const __m512 r = _mm512_mul_ps(r0, t);
                s0 = _mm512_add_ps(s0, r);
                d0 = _mm512_add_ps(d0, _mm512_fnmadd_ps(r, r, r));
            }
            for (int32_t j = A.L0; j < A.L; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                const __m512 r = _mm512_mul_ps(r0, t);
                s1 = _mm512_add_ps(s1, r);
                d1 = _mm512_add_ps(d1, _mm512_fnmadd_ps(r, r, r));
            }
            ssum = _mm512_fmadd_ps(h1, s1, _mm512_fmadd_ps(h0, s0, ssum));
            dsum = _mm512_fmadd_ps(h1, d1, _mm512_mul_ps(h0, d0));
        } else {
            for (int32_t j = 0; j < A.L; ++j) {
                QB_STEP(FIXED ? _mm512_set1_ps(A.cf[j]) : A.C[j].at<K>(a));
                const __m512 r = _mm512_mul_ps(r0, t);
                const __m512 sj = A.dense ? _mm512_set1_ps(A.sd[j]) : A.Sw[j].at<K>(a);
                dsum = _mm512_fmadd_ps(_mm512_fnmadd_ps(r, r, r), sj, dsum);
                ssum = _mm512_fmadd_ps(r, sj, ssum);
            }
        }
        const __m512 gd = _mm512_mul_ps(gv, dsum);
        if (gx != nullptr) _mm512_mask_storeu_ps(gx + i, mk, _mm512_mul_ps(gd, vs));
        // sum g (ssum - o) and sum g dsum x
        acc.add(need_alpha, gv, _mm512_sub_ps(ssum, vo), need_beta, gd, xv);
    }
    acc.finish(red);
}
#undef QB_STEP
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
    AnchorTables anc;  // float32 soft quantizer on AVX-512
#endif

    Params(const S* b_, const S* s_, int64_t n_, double a, double be, double t, double o, double zcut)
        : b(b_), s(s_), n(n_), alpha(S(a)), beta(S(be)), T(S(t)), offset(S(o)), W(0) {
#ifdef QB_AVX512
        if constexpr (sizeof(S) == 4) {
            anc = anchor_tables(b, s, n, T, zcut);
            if (anc.ok) return;  // the generic tables below are not used
        }
#endif
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
    }
};

#ifdef QB_AVX512
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

// n > 63 or unsorted biases: every step with its own exponential
void backward_block_avx512_dense(const float* dense_b, const float* dense_s, int64_t dense_n,
                                 const float* g, const float* x, float* gx, int64_t m, float beta,
                                 float T, float offset, float scale, bool need_alpha, bool need_beta,
                                 double* red) {
    const __m512 vb = _mm512_set1_ps(beta), vT = _mm512_set1_ps(T), one = _mm512_set1_ps(1.0f);
    const __m512 vo = _mm512_set1_ps(offset), vs = _mm512_set1_ps(scale);
    RedAcc acc;
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        const __m512 u = _mm512_mul_ps(xv, vb);
        __m512 ssum = _mm512_setzero_ps(), dsum = _mm512_setzero_ps();
        for (int64_t j = 0; j < dense_n; ++j) {
            const __m512 sj = _mm512_set1_ps(dense_s[j]);
            const __m512 sig = v_sigm(_mm512_mul_ps(_mm512_sub_ps(u, _mm512_set1_ps(dense_b[j])), vT));
            dsum = _mm512_fmadd_ps(_mm512_mul_ps(sig, _mm512_sub_ps(one, sig)), sj, dsum);
            ssum = _mm512_fmadd_ps(sig, sj, ssum);
        }
        const __m512 gd = _mm512_mul_ps(gv, dsum);
        if (gx != nullptr) _mm512_mask_storeu_ps(gx + i, mk, _mm512_mul_ps(gd, vs));
        // sum g (ssum - o) and sum g dsum x
        acc.add(need_alpha, gv, _mm512_sub_ps(ssum, vo), need_beta, gd, xv);
    }
    acc.finish(red);
}

template <int NPOW>
void hard_block_avx512(const Avx512Tables& A, const Lut32& out, const float* x, float* y, int64_t m,
                       float beta, float alpha) {
    const __m512 vb = _mm512_set1_ps(beta), va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 mk = tail_mask(i, m);
        const __m512 u = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vb);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(out(v_codes<NPOW>(A, u)), va));
    }
}
#endif

template <typename S>
void forward_block(const Params<S>& P, const S* QB_R x, S* QB_R y, int64_t m) {
#ifdef QB_AVX512
    if constexpr (sizeof(S) == 4) {
        if (P.anc.ok) {
            const AnchorTables& A = P.anc;
            if (A.fixed) return forward_block_anchor<16, true>(A, x, y, m, P.beta, P.T, P.offset, P.alpha);
            if (A.n <= 16) return forward_block_anchor<16, false>(A, x, y, m, P.beta, P.T, P.offset, P.alpha);
            if (A.n <= 32) return forward_block_anchor<32, false>(A, x, y, m, P.beta, P.T, P.offset, P.alpha);
            return forward_block_anchor<64, false>(A, x, y, m, P.beta, P.T, P.offset, P.alpha);
        }
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
        if (P.anc.ok && !need_biases) {
            const AnchorTables& A = P.anc;
            const float sc = P.alpha * P.beta * P.T;
            if (A.fixed)
                return backward_block_anchor<16, true>(A, g, x, gx, m, P.beta, P.T, P.offset, sc, need_alpha, need_beta, red);
            if (A.n <= 16)
                return backward_block_anchor<16, false>(A, g, x, gx, m, P.beta, P.T, P.offset, sc, need_alpha, need_beta, red);
            if (A.n <= 32)
                return backward_block_anchor<32, false>(A, g, x, gx, m, P.beta, P.T, P.offset, sc, need_alpha, need_beta, red);
            return backward_block_anchor<64, false>(A, g, x, gx, m, P.beta, P.T, P.offset, sc, need_alpha, need_beta, red);
        }
        if (P.W == 0 && !need_biases)
            return backward_block_avx512_dense(P.b, P.s, P.n, g, x, gx, m, P.beta, P.T, P.offset,
                                               P.alpha * P.beta * P.T, need_alpha, need_beta, red);
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
            A.search = Search(qs.data(), npow);
            A.n = int32_t(n);
            const Lut32 out(outv, n + 1, 0.0f);
#pragma omp parallel for schedule(static) num_threads(threads_for(chunks, nthreads))
            for (int64_t c = 0; c < chunks; ++c) {
                const int64_t i0 = c * CHUNK, end = std::min<int64_t>(N, (c + 1) * CHUNK);
                float* yc = y + i0;
                const float* xc = x + i0;
                const int64_t mc = end - i0;
                switch (npow) {
                    case 1: case 2: hard_block_avx512<2>(A, out, xc, yc, mc, be, a); break;
                    case 4: hard_block_avx512<4>(A, out, xc, yc, mc, be, a); break;
                    case 8: hard_block_avx512<8>(A, out, xc, yc, mc, be, a); break;
                    case 16: hard_block_avx512<16>(A, out, xc, yc, mc, be, a); break;
                    case 32: hard_block_avx512<32>(A, out, xc, yc, mc, be, a); break;
                    default: hard_block_avx512<64>(A, out, xc, yc, mc, be, a); break;
                }
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
