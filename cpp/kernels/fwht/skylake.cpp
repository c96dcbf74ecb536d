// Kernel family 'fwht', tier skylake (AVX-512F, 8 doubles a register): see reference.inc.
// Passes of length 1 .. 8 on blocks of 16 values (lengths 1, 2 and 4 inside a register, 8
// between two registers), then the longer passes three at a time on 8 registers.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/fwht/reference.inc"

inline void butterfly_f64x8(__m512d& lo, __m512d& hi) {
    const __m512d sum = _mm512_add_pd(lo, hi);
    hi = _mm512_sub_pd(lo, hi);
    lo = sum;
}

// The pass of length len (1, 2 or 4) inside a register: swapped holds each value's partner,
// mask the lanes that take lo - hi (= swapped - value there).
inline __m512d in_register_f64x8(__m512d value, __m512d swapped, __mmask8 high_lanes) {
    return _mm512_mask_blend_pd(high_lanes, _mm512_add_pd(value, swapped), _mm512_sub_pd(swapped, value));
}

// Passes of length L, 2L, .., 2^(Passes-1) L (L a multiple of 8) over y (h,).
template <int Passes>
void passes_f64x8(double* y, std::size_t h, std::size_t L, bool last, __m512d norm_f64x8) {
    constexpr int R = 1 << Passes;
    for (std::size_t i = 0; i < h; i += R * L) {
        for (std::size_t j = 0; j < L; j += 8) {
            double* base = y + i + j;
            __m512d r[R];
            for (int k = 0; k < R; ++k) r[k] = _mm512_loadu_pd(base + k * L);
            for (int p = 0; p < Passes; ++p)
                for (int k = 0; k < R; ++k)
                    if (!(k & (1 << p))) butterfly_f64x8(r[k], r[k + (1 << p)]);
            if (last)
                for (int k = 0; k < R; ++k) r[k] = _mm512_mul_pd(r[k], norm_f64x8);
            for (int k = 0; k < R; ++k) _mm512_storeu_pd(base + k * L, r[k]);
        }
    }
}

template <bool Signed>
void block16_f64x8(double* y, const float* signs, bool last, __m512d norm_f64x8) {
    __m512d r[2];
    for (int k = 0; k < 2; ++k) {
        r[k] = _mm512_loadu_pd(y + 8 * k);
        if (Signed) r[k] = _mm512_mul_pd(r[k], _mm512_cvtps_pd(_mm256_loadu_ps(signs + 8 * k)));
    }
    for (int k = 0; k < 2; ++k) {
        r[k] = in_register_f64x8(r[k], _mm512_permute_pd(r[k], 0x55), 0xAA);              // length 1
        r[k] = in_register_f64x8(r[k], _mm512_permutex_pd(r[k], 0x4E), 0xCC);             // length 2
        r[k] = in_register_f64x8(r[k], _mm512_shuffle_f64x2(r[k], r[k], 0x4E), 0xF0);     // length 4
    }
    butterfly_f64x8(r[0], r[1]);  // length 8
    if (last)
        for (int k = 0; k < 2; ++k) r[k] = _mm512_mul_pd(r[k], norm_f64x8);
    for (int k = 0; k < 2; ++k) _mm512_storeu_pd(y + 8 * k, r[k]);
}

void fwht_f64_skylake(double* y, const float* signs, std::size_t h) {
    if (h < 16) {
        fwht_f64_reference(y, signs, h);
        return;
    }
    const __m512d norm_f64x8 = _mm512_set1_pd(1.0 / __builtin_sqrt(static_cast<double>(h)));
    const bool only = h == 16;
    if (signs) {
        for (std::size_t i = 0; i < h; i += 16) block16_f64x8<true>(y + i, signs + i, only, norm_f64x8);
    } else {
        for (std::size_t i = 0; i < h; i += 16) block16_f64x8<false>(y + i, nullptr, only, norm_f64x8);
    }
    std::size_t L = 16;
    while (L < h) {
        std::size_t left = 0;
        for (std::size_t t = L; t < h; t <<= 1) ++left;  // passes still to do
        const bool last = left <= 3;
        if (left >= 3) {
            passes_f64x8<3>(y, h, L, last, norm_f64x8);
            L <<= 3;
        } else if (left == 2) {
            passes_f64x8<2>(y, h, L, last, norm_f64x8);
            L <<= 2;
        } else {
            passes_f64x8<1>(y, h, L, last, norm_f64x8);
            L <<= 1;
        }
    }
}

}  // namespace

void register_fwht_skylake(KernelTable& table) { table.fwht_f64 = fwht_f64_skylake; }

}  // namespace simdex
