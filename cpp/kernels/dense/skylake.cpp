// Dense kernels, tier skylake (AVX-512 F/BW/VL): 16 float32 lanes, two accumulators per row,
// masked loads for the tail (no scalar remainder loop). dot_s8u8 comes from the tier below
// (haswell) here and from dense/icelake.cpp (VNNI) one tier up.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

struct F32 {
    using T = float;
    // Two 256-bit loads: with 512-bit loads, rows streamed from memory (a one-query scan of
    // 60k x 384) ran 5-11% slower than the haswell tier on a Zen 4 (unaligned rows split
    // every 512-bit load across two cache lines; aligned ones were no better); with 256-bit
    // loads 1% (bench/RESULTS.md section 9). Rows in cache keep their gain.
    static __m512 load(const float* x) {
        return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x)), _mm256_loadu_ps(x + 8), 1);
    }
    static __m512 load_tail(const float* x, __mmask16 m) { return _mm512_maskz_loadu_ps(m, x); }
};
struct F16 {
    using T = std::uint16_t;
    static __m512 load(const std::uint16_t* x) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    }
    static __m512 load_tail(const std::uint16_t* x, __mmask16 m) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x));
    }
};
struct BF16 {
    using T = std::uint16_t;
    static __m512 widen(__m256i h) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    static __m512 load(const std::uint16_t* x) {
        return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    }
    static __m512 load_tail(const std::uint16_t* x, __mmask16 m) {
        return widen(_mm256_maskz_loadu_epi16(m, x));
    }
};
struct U8 {
    using T = std::uint8_t;
    static __m512 load(const std::uint8_t* x) {
        return _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))));
    }
    static __m512 load_tail(const std::uint8_t* x, __mmask16 m) {
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x)));
    }
};

// Step functors: fold one 16-lane block of q and x into an accumulator.
struct DotStep {
    static __m512 step(__m512 q, __m512 x, __m512 s, const float*, std::size_t) {
        return _mm512_fmadd_ps(q, x, s);
    }
    static __m512 step_tail(__m512 q, __m512 x, __m512 s, const float*, std::size_t,
                            __mmask16) {
        return _mm512_fmadd_ps(q, x, s);
    }
};
struct L2Step {
    static __m512 step(__m512 q, __m512 x, __m512 s, const float*, std::size_t) {
        __m512 diff = _mm512_sub_ps(q, x);
        return _mm512_fmadd_ps(diff, diff, s);
    }
    static __m512 step_tail(__m512 q, __m512 x, __m512 s, const float*, std::size_t,
                            __mmask16) {
        __m512 diff = _mm512_sub_ps(q, x);
        return _mm512_fmadd_ps(diff, diff, s);
    }
};
// (q_j - scale_j * x_j)^2, scale read alongside
struct L2ScaledStep {
    static __m512 step(__m512 q, __m512 x, __m512 s, const float* scale, std::size_t j) {
        __m512 diff = _mm512_fnmadd_ps(_mm512_loadu_ps(scale + j), x, q);
        return _mm512_fmadd_ps(diff, diff, s);
    }
    static __m512 step_tail(__m512 q, __m512 x, __m512 s, const float* scale, std::size_t j,
                            __mmask16 m) {
        __m512 diff = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, scale + j), x, q);
        return _mm512_fmadd_ps(diff, diff, s);
    }
};

template <class L, class S>
float one(const float* q, const float* scale, const typename L::T* x, std::size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    std::size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = S::step(_mm512_loadu_ps(q + j), L::load(x + j), s0, scale, j);
        s1 = S::step(_mm512_loadu_ps(q + j + 16), L::load(x + j + 16), s1, scale, j + 16);
    }
    if (j + 16 <= d) {
        s0 = S::step(_mm512_loadu_ps(q + j), L::load(x + j), s0, scale, j);
        j += 16;
    }
    if (j < d) {
        __mmask16 m = static_cast<__mmask16>((1u << (d - j)) - 1u);
        s1 = S::step_tail(_mm512_maskz_loadu_ps(m, q + j), L::load_tail(x + j, m), s1, scale, j, m);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// Rows are scored one after another: a single sequential stream is what the hardware
// prefetchers follow best (scoring 4 interleaved rows per pass measured 2x slower on a
// memory-bound scan).
template <class L, class S>
void rows(const float* q, const float* scale, const typename L::T* x, std::size_t n,
          std::size_t d, float* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = one<L, S>(q, scale, x + i * d, d);
}

template <class L, class S>
float pair(const float* q, const typename L::T* x, std::size_t d) {
    return one<L, S>(q, nullptr, x, d);
}
template <class L, class S>
void pair_rows(const float* q, const typename L::T* x, std::size_t n, std::size_t d, float* out) {
    rows<L, S>(q, nullptr, x, n, d, out);
}

// <q, x> and <x, x> from one load of each row vector; masked loads for the tail.
void dot_norm_rows(const float* q, const float* x, std::size_t n, std::size_t d, float* dots,
                   float* norms) {
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = x + i * d;
        __m512 dot0 = _mm512_setzero_ps(), dot1 = _mm512_setzero_ps();
        __m512 norm0 = _mm512_setzero_ps(), norm1 = _mm512_setzero_ps();
        std::size_t j = 0;
        for (; j + 32 <= d; j += 32) {
            const __m512 x0 = _mm512_loadu_ps(row + j), x1 = _mm512_loadu_ps(row + j + 16);
            dot0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), x0, dot0);
            dot1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), x1, dot1);
            norm0 = _mm512_fmadd_ps(x0, x0, norm0);
            norm1 = _mm512_fmadd_ps(x1, x1, norm1);
        }
        for (; j < d; j += 16) {
            const __mmask16 m = d - j >= 16 ? static_cast<__mmask16>(0xFFFF)
                                            : static_cast<__mmask16>((1u << (d - j)) - 1u);
            const __m512 x0 = _mm512_maskz_loadu_ps(m, row + j);
            dot0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + j), x0, dot0);
            norm0 = _mm512_fmadd_ps(x0, x0, norm0);
        }
        dots[i] = _mm512_reduce_add_ps(_mm512_add_ps(dot0, dot1));
        norms[i] = _mm512_reduce_add_ps(_mm512_add_ps(norm0, norm1));
    }
}

}  // namespace

void register_dense_skylake(KernelTable& t) {
    t.dot_norm_f32_rows = dot_norm_rows;
    t.dot_f32 = pair<F32, DotStep>;
    t.l2_f32 = pair<F32, L2Step>;
    t.dot_f16 = pair<F16, DotStep>;
    t.l2_f16 = pair<F16, L2Step>;
    t.dot_bf16 = pair<BF16, DotStep>;
    t.l2_bf16 = pair<BF16, L2Step>;
    t.dot_u8 = pair<U8, DotStep>;
    t.l2_u8 = one<U8, L2ScaledStep>;
    t.dot_f32_rows = pair_rows<F32, DotStep>;
    t.l2_f32_rows = pair_rows<F32, L2Step>;
    t.dot_f16_rows = pair_rows<F16, DotStep>;
    t.l2_f16_rows = pair_rows<F16, L2Step>;
    t.dot_bf16_rows = pair_rows<BF16, DotStep>;
    t.l2_bf16_rows = pair_rows<BF16, L2Step>;
    t.dot_u8_rows = pair_rows<U8, DotStep>;
    t.l2_u8_rows = rows<U8, L2ScaledStep>;
}

}  // namespace simdex
