// bf16 dot product of a float32 query with bfloat16 rows: widening (the skylake tier's
// kernel, cpp/kernels/dense/skylake.cpp) against AVX512_BF16 VDPBF16PS with the query split
// into bf16 parts. Built and driven by bench/bf16_dot_probe.py (ctypes); not part of simdex.
//
// Kernels (index `which`):
//   0 widen2   skylake's kernel as shipped: bf16 -> f32 (vpmovzxwd + shift), FMA, 2 accumulators
//   1 widen4   the same with 4 accumulators (64 dims per step)
//   2 bf16x3   query split once per call into h + m + l (exact: 3 x 8 bits = float32's 24),
//              one 512-bit row load per 32 dims, 3 VDPBF16PS, a separate accumulator per part
//   3 bf16x2   h + m only (q rounded to 16 bits: not exact, for the speed comparison)
//   4 bf16x3r2 bf16x3 scoring two rows per pass (part loads shared); one-pair calls as bf16x3
//   5 widen2r2 widen2 scoring two rows per pass (query loads shared); one-pair calls as widen2
//   6 widen_eo widening by shift / AND of 32-bit lanes against a deinterleaved query (below)
// The split truncates (h = top 16 bits of q, m = top 16 bits of q - h, l = q - h - m), so
// every part is exact and no part overflows; VDPBF16PS flushes bf16 denormals to zero (a part
// below 2^-126 is lost) and its float32 outputs too.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>

namespace {

inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load_bf16(const std::uint16_t* x) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}
inline __m512 load_bf16_tail(const std::uint16_t* x, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, x));
}

float widen2(const float* q, const std::uint16_t* x, std::size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    std::size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), load_bf16(x + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), load_bf16(x + j + 16), s1);
    }
    if (j + 16 <= d) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), load_bf16(x + j), s0);
        j += 16;
    }
    if (j < d) {
        __mmask16 m = static_cast<__mmask16>((1u << (d - j)) - 1u);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + j), load_bf16_tail(x + j, m), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float widen4(const float* q, const std::uint16_t* x, std::size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    std::size_t j = 0;
    for (; j + 64 <= d; j += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), load_bf16(x + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), load_bf16(x + j + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 32), load_bf16(x + j + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 48), load_bf16(x + j + 48), s3);
    }
    for (; j < d; j += 16) {
        const __mmask16 m = d - j >= 16 ? static_cast<__mmask16>(0xFFFF)
                                        : static_cast<__mmask16>((1u << (d - j)) - 1u);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + j), load_bf16_tail(x + j, m), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// Query parts, bf16, natural order (VDPBF16PS pairs dims 2k and 2k+1 of both operands),
// zero-padded to a multiple of 32 dims.
constexpr std::size_t kMaxDims = 4096;
struct Parts {
    alignas(64) std::uint16_t h[kMaxDims];
    alignas(64) std::uint16_t m[kMaxDims];
    alignas(64) std::uint16_t l[kMaxDims];
};

// top 16 bits of each float32 lane of a and b -> 32 bf16 (a's in the low half)
inline __m512i top_halves(__m512 a, __m512 b) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37,
                                         35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9,
                                         7, 5, 3, 1);
    return _mm512_permutex2var_epi16(_mm512_castps_si512(a), idx, _mm512_castps_si512(b));
}

// q[j .. j + 32) as two registers, zeros past d.
inline void load32(const float* q, std::size_t d, std::size_t j, __m512& a, __m512& b) {
    const std::size_t left = d - j;
    const __mmask16 m0 = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1u);
    const __mmask16 m1 = left >= 32   ? 0xFFFF
                         : left <= 16 ? 0
                                      : static_cast<__mmask16>((1u << (left - 16)) - 1u);
    a = _mm512_maskz_loadu_ps(m0, q + j);
    b = _mm512_maskz_loadu_ps(m1, q + j + 16);
}

void split(const float* q, std::size_t d, Parts& p) {
    const __m512 hi = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
    for (std::size_t j = 0; j < d; j += 32) {
        __m512 a, b;
        load32(q, d, j, a, b);
        const __m512 ha = _mm512_and_ps(a, hi), hb = _mm512_and_ps(b, hi);
        const __m512 ra = _mm512_sub_ps(a, ha), rb = _mm512_sub_ps(b, hb);  // exact
        const __m512 ma = _mm512_and_ps(ra, hi), mb = _mm512_and_ps(rb, hi);
        const __m512 la = _mm512_sub_ps(ra, ma), lb = _mm512_sub_ps(rb, mb);  // exact, 8 bits
        _mm512_store_si512(p.h + j, top_halves(ha, hb));
        _mm512_store_si512(p.m + j, top_halves(ma, mb));
        _mm512_store_si512(p.l + j, top_halves(la, lb));
    }
}

// acc += pairs of x . pairs of the part at p (VDPBF16PS with a memory operand). Inline asm:
// with _mm512_dpbf16_ps, g++ 12 reloads the row vector before every use.
inline __m512 dp(__m512 acc, __m512i x, const std::uint16_t* p) {
    asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(x), "m"(*reinterpret_cast<const __m512i*>(p)));
    return acc;
}

template <int NP>
float dot_parts(const Parts& p, const std::uint16_t* x, std::size_t d) {
    __m512 h0 = _mm512_setzero_ps(), m0 = _mm512_setzero_ps(), l0 = _mm512_setzero_ps();
    __m512 h1 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps(), l1 = _mm512_setzero_ps();
    std::size_t j = 0;
    for (; j + 64 <= d; j += 64) {
        const __m512i x0 = _mm512_loadu_si512(x + j), x1 = _mm512_loadu_si512(x + j + 32);
        h0 = dp(h0, x0, p.h + j);
        h1 = dp(h1, x1, p.h + j + 32);
        m0 = dp(m0, x0, p.m + j);
        m1 = dp(m1, x1, p.m + j + 32);
        if (NP == 3) {
            l0 = dp(l0, x0, p.l + j);
            l1 = dp(l1, x1, p.l + j + 32);
        }
    }
    for (; j < d; j += 32) {  // masked row load; the parts are zero past d
        const std::size_t left = d - j;
        const __mmask32 k = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1u << left) - 1u);
        const __m512i x0 = _mm512_maskz_loadu_epi16(k, x + j);
        h0 = dp(h0, x0, p.h + j);
        m0 = dp(m0, x0, p.m + j);
        if (NP == 3) l0 = dp(l0, x0, p.l + j);
    }
    // small parts first, then the large one
    const __m512 small = _mm512_add_ps(_mm512_add_ps(l0, l1), _mm512_add_ps(m0, m1));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(h0, h1), small));
}

// bf16x3 on two rows per pass: each part vector loaded once for both rows
// (2.5 zmm loads and 3 VDPBF16PS per 32 dims per row instead of 4 and 3)
void dot_parts_2rows(const Parts& p, const std::uint16_t* x, const std::uint16_t* y,
                     std::size_t d, float* out) {
    __m512 xh = _mm512_setzero_ps(), xm = xh, xl = xh, yh = xh, ym = xh, yl = xh;
    for (std::size_t j = 0; j < d; j += 32) {
        const std::size_t left = d - j;
        const __mmask32 k = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1u << left) - 1u);
        const __m512i a = _mm512_maskz_loadu_epi16(k, x + j), b = _mm512_maskz_loadu_epi16(k, y + j);
        const __m512i h = _mm512_load_si512(p.h + j), m = _mm512_load_si512(p.m + j);
        const __m512i l = _mm512_load_si512(p.l + j);
        asm("vdpbf16ps %6, %7, %0\n\tvdpbf16ps %6, %8, %1\n\t"
            "vdpbf16ps %9, %7, %2\n\tvdpbf16ps %9, %8, %3\n\t"
            "vdpbf16ps %10, %7, %4\n\tvdpbf16ps %10, %8, %5"
            : "+v"(xh), "+v"(yh), "+v"(xm), "+v"(ym), "+v"(xl), "+v"(yl)
            : "v"(h), "v"(a), "v"(b), "v"(m), "v"(l));
    }
    out[0] = _mm512_reduce_add_ps(_mm512_add_ps(xh, _mm512_add_ps(xm, xl)));
    out[1] = _mm512_reduce_add_ps(_mm512_add_ps(yh, _mm512_add_ps(ym, yl)));
}

// widen2 on two rows per pass: each query vector loaded once for both rows
void widen2_2rows(const float* q, const std::uint16_t* x, const std::uint16_t* y, std::size_t d,
                  float* out) {
    __m512 x0 = _mm512_setzero_ps(), x1 = x0, y0 = x0, y1 = x0;
    std::size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        const __m512 q0 = _mm512_loadu_ps(q + j), q1 = _mm512_loadu_ps(q + j + 16);
        x0 = _mm512_fmadd_ps(q0, load_bf16(x + j), x0);
        x1 = _mm512_fmadd_ps(q1, load_bf16(x + j + 16), x1);
        y0 = _mm512_fmadd_ps(q0, load_bf16(y + j), y0);
        y1 = _mm512_fmadd_ps(q1, load_bf16(y + j + 16), y1);
    }
    for (; j < d; j += 16) {
        const __mmask16 m = d - j >= 16 ? static_cast<__mmask16>(0xFFFF)
                                        : static_cast<__mmask16>((1u << (d - j)) - 1u);
        const __m512 q0 = _mm512_maskz_loadu_ps(m, q + j);
        x0 = _mm512_fmadd_ps(q0, load_bf16_tail(x + j, m), x0);
        y0 = _mm512_fmadd_ps(q0, load_bf16_tail(y + j, m), y0);
    }
    out[0] = _mm512_reduce_add_ps(_mm512_add_ps(x0, x1));
    out[1] = _mm512_reduce_add_ps(_mm512_add_ps(y0, y1));
}

// Widening without a shuffle: 32 bf16 of a row are 16 float32 lanes each holding dims 2k
// (low half) and 2k+1 (high half); lane << 16 is dim 2k as float32, lane & 0xFFFF0000 is dim
// 2k+1. The query is deinterleaved once per call (even dims, odd dims, per 32-dim block), so
// each 32 dims cost one 512-bit load, one shift, one AND and two FMA (same products and
// float32 FMA as widen2: only the order of the partial sums differs).
struct EvenOdd {
    alignas(64) float e[kMaxDims / 2];
    alignas(64) float o[kMaxDims / 2];
};

void deinterleave(const float* q, std::size_t d, EvenOdd& eo) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (std::size_t j = 0; j < d; j += 32) {
        __m512 a, b;
        load32(q, d, j, a, b);
        _mm512_store_ps(eo.e + j / 2, _mm512_permutex2var_ps(a, even, b));
        _mm512_store_ps(eo.o + j / 2, _mm512_permutex2var_ps(a, odd, b));
    }
}

float widen_eo(const EvenOdd& eo, const std::uint16_t* x, std::size_t d) {
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    std::size_t j = 0;
    for (; j + 64 <= d; j += 64) {
        __m512i a = _mm512_loadu_si512(x + j), b = _mm512_loadu_si512(x + j + 32);
        asm("" : "+v"(a), "+v"(b));  // one load each (g++ 12 folds a load into both uses)
        s0 = _mm512_fmadd_ps(_mm512_load_ps(eo.e + j / 2), _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), s0);
        s1 = _mm512_fmadd_ps(_mm512_load_ps(eo.o + j / 2), _mm512_castsi512_ps(_mm512_and_si512(a, hi)), s1);
        s2 = _mm512_fmadd_ps(_mm512_load_ps(eo.e + j / 2 + 16), _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), s2);
        s3 = _mm512_fmadd_ps(_mm512_load_ps(eo.o + j / 2 + 16), _mm512_castsi512_ps(_mm512_and_si512(b, hi)), s3);
    }
    for (; j < d; j += 32) {  // masked row load; the query halves are zero past d
        const std::size_t left = d - j;
        const __mmask32 k = left >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1u << left) - 1u);
        const __m512i a = _mm512_maskz_loadu_epi16(k, x + j);
        s0 = _mm512_fmadd_ps(_mm512_load_ps(eo.e + j / 2), _mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), s0);
        s1 = _mm512_fmadd_ps(_mm512_load_ps(eo.o + j / 2), _mm512_castsi512_ps(_mm512_and_si512(a, hi)), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

EvenOdd g_eo;
Parts g_parts;

}  // namespace

extern "C" {

// rows mode: one call over n rows (query split once); pair mode: n single-pair calls
// (query split in every call for the bf16 kernels, as a one-pair kernel would have to)
void run(int which, int pair_mode, const float* q, const std::uint16_t* x, std::size_t n,
         std::size_t d, float* out) {
    if (which >= 2 && which != 5 && which != 6 && !pair_mode) split(q, d, g_parts);
    if (which == 6 && !pair_mode) deinterleave(q, d, g_eo);
    std::size_t i0 = 0;
    if (which == 4 && !pair_mode)
        for (; i0 + 2 <= n; i0 += 2) dot_parts_2rows(g_parts, x + i0 * d, x + (i0 + 1) * d, d, out + i0);
    if (which == 5 && !pair_mode)
        for (; i0 + 2 <= n; i0 += 2) widen2_2rows(q, x + i0 * d, x + (i0 + 1) * d, d, out + i0);
    for (std::size_t i = i0; i < n; ++i) {
        const std::uint16_t* row = x + i * d;
        switch (which) {
            case 0:
            case 5: out[i] = widen2(q, row, d); break;
            case 6:
                if (pair_mode) deinterleave(q, d, g_eo);
                out[i] = widen_eo(g_eo, row, d);
                break;
            case 1: out[i] = widen4(q, row, d); break;
            case 2:
            case 4:
                if (pair_mode) split(q, d, g_parts);
                out[i] = dot_parts<3>(g_parts, row, d);
                break;
            default:
                if (pair_mode) split(q, d, g_parts);
                out[i] = dot_parts<2>(g_parts, row, d);
                break;
        }
    }
}

// thread CPU seconds for reps calls of run()
double time_run(int which, int pair_mode, const float* q, const std::uint16_t* x, std::size_t n,
                std::size_t d, float* out, int reps) {
    timespec a{}, b{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (int r = 0; r < reps; ++r) {
        run(which, pair_mode, q, x, n, d, out);
        asm volatile("" : : "r"(out) : "memory");
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    return static_cast<double>(b.tv_sec - a.tv_sec) + 1e-9 * static_cast<double>(b.tv_nsec - a.tv_nsec);
}

// Register-only loops, thread CPU seconds for `iters` iterations of 8 instructions:
// kind 0: vfmadd231ps zmm, 8 independent accumulators (throughput); 1: vdpbf16ps zmm, same;
// 2: vfmadd231ps, one dependent chain (latency); 3: vdpbf16ps, one chain.
double peak(int kind, long iters) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m512 b = _mm512_set1_ps(1e-3f), c = _mm512_set1_ps(1e-3f);
    timespec t0{}, t1{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (long i = 0; i < iters; ++i) {
        switch (kind) {
#define SIMDEX_PROBE_8(OP, A, B, C, D, E, F, G, H)                                             \
    asm volatile(OP " %8, %9, %0\n\t" OP " %8, %9, %1\n\t" OP " %8, %9, %2\n\t" OP         \
                    " %8, %9, %3\n\t" OP " %8, %9, %4\n\t" OP " %8, %9, %5\n\t" OP           \
                    " %8, %9, %6\n\t" OP " %8, %9, %7"                                          \
                 : "+v"(A), "+v"(B), "+v"(C), "+v"(D), "+v"(E), "+v"(F), "+v"(G), "+v"(H)       \
                 : "v"(b), "v"(c))
            case 0: SIMDEX_PROBE_8("vfmadd231ps", a0, a1, a2, a3, a4, a5, a6, a7); break;
            case 1: SIMDEX_PROBE_8("vdpbf16ps", a0, a1, a2, a3, a4, a5, a6, a7); break;
#define SIMDEX_PROBE_CHAIN(OP)                                                                 \
    asm volatile(OP " %1, %2, %0\n\t" OP " %1, %2, %0\n\t" OP " %1, %2, %0\n\t" OP           \
                    " %1, %2, %0\n\t" OP " %1, %2, %0\n\t" OP " %1, %2, %0\n\t" OP            \
                    " %1, %2, %0\n\t" OP " %1, %2, %0"                                          \
                 : "+v"(a0)                                                                    \
                 : "v"(b), "v"(c))
            case 2: SIMDEX_PROBE_CHAIN("vfmadd231ps"); break;
            default: SIMDEX_PROBE_CHAIN("vdpbf16ps"); break;
#undef SIMDEX_PROBE_CHAIN
#undef SIMDEX_PROBE_8
        }
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(
        _mm512_add_ps(a2, a3), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)))));
    (void)sink;
    return static_cast<double>(t1.tv_sec - t0.tv_sec) + 1e-9 * static_cast<double>(t1.tv_nsec - t0.tv_nsec);
}

std::size_t max_dims() { return kMaxDims; }
}
