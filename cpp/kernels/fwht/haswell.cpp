// Kernel family 'fwht', tier haswell (AVX2, 4 doubles a register): see reference.inc.
// Passes of length 1 .. 8 on blocks of 16 values (lengths 1 and 2 inside a register, 4 and
// 8 between four registers), then the longer passes three at a time on 8 registers.
#include <immintrin.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/fwht/reference.inc"

inline void butterfly_f64x4(__m256d& lo, __m256d& hi) {
    const __m256d sum = _mm256_add_pd(lo, hi);
    hi = _mm256_sub_pd(lo, hi);
    lo = sum;
}

// Passes of length L, 2L, .., 2^(Passes-1) L (L a multiple of 4) over y (h,); the last group
// of a transform multiplies by the normalisation before storing.
template <int Passes>
void passes_f64x4(double* y, std::size_t h, std::size_t L, bool last, __m256d norm_f64x4) {
    constexpr int R = 1 << Passes;
    for (std::size_t i = 0; i < h; i += R * L) {
        for (std::size_t j = 0; j < L; j += 4) {
            double* base = y + i + j;
            __m256d r[R];
            for (int k = 0; k < R; ++k) r[k] = _mm256_loadu_pd(base + k * L);
            for (int p = 0; p < Passes; ++p)
                for (int k = 0; k < R; ++k)
                    if (!(k & (1 << p))) butterfly_f64x4(r[k], r[k + (1 << p)]);
            if (last)
                for (int k = 0; k < R; ++k) r[k] = _mm256_mul_pd(r[k], norm_f64x4);
            for (int k = 0; k < R; ++k) _mm256_storeu_pd(base + k * L, r[k]);
        }
    }
}

// Passes of length 1, 2, 4, 8 over one block of 16 values (signed first).
template <bool Signed>
void block16_f64x4(double* y, const float* signs, bool last, __m256d norm_f64x4) {
    __m256d r[4];
    for (int k = 0; k < 4; ++k) {
        r[k] = _mm256_loadu_pd(y + 4 * k);
        if (Signed) r[k] = _mm256_mul_pd(r[k], _mm256_cvtps_pd(_mm_loadu_ps(signs + 4 * k)));
    }
    for (int k = 0; k < 4; ++k) {
        // length 1: [a0 a1 a2 a3] -> [a0 + a1, a0 - a1, a2 + a3, a2 - a3]
        const __m256d swapped = _mm256_permute_pd(r[k], 0x5);  // [a1 a0 a3 a2]
        r[k] = _mm256_blend_pd(_mm256_add_pd(r[k], swapped), _mm256_sub_pd(swapped, r[k]), 0xA);
    }
    for (int k = 0; k < 4; ++k) {
        // length 2: [b0 b1 b2 b3] -> [b0 + b2, b1 + b3, b0 - b2, b1 - b3]
        const __m256d swapped = _mm256_permute2f128_pd(r[k], r[k], 0x01);  // [b2 b3 b0 b1]
        r[k] = _mm256_blend_pd(_mm256_add_pd(r[k], swapped), _mm256_sub_pd(swapped, r[k]), 0xC);
    }
    butterfly_f64x4(r[0], r[1]);  // length 4
    butterfly_f64x4(r[2], r[3]);
    butterfly_f64x4(r[0], r[2]);  // length 8
    butterfly_f64x4(r[1], r[3]);
    if (last)
        for (int k = 0; k < 4; ++k) r[k] = _mm256_mul_pd(r[k], norm_f64x4);
    for (int k = 0; k < 4; ++k) _mm256_storeu_pd(y + 4 * k, r[k]);
}

void fwht_f64_haswell(double* y, const float* signs, std::size_t h) {
    if (h < 16) {
        fwht_f64_reference(y, signs, h);
        return;
    }
    const __m256d norm_f64x4 = _mm256_set1_pd(1.0 / __builtin_sqrt(static_cast<double>(h)));
    const bool only = h == 16;
    if (signs) {
        for (std::size_t i = 0; i < h; i += 16) block16_f64x4<true>(y + i, signs + i, only, norm_f64x4);
    } else {
        for (std::size_t i = 0; i < h; i += 16) block16_f64x4<false>(y + i, nullptr, only, norm_f64x4);
    }
    std::size_t L = 16;
    while (L < h) {
        std::size_t left = 0;
        for (std::size_t t = L; t < h; t <<= 1) ++left;  // passes still to do
        const bool last = left <= 3;
        if (left >= 3) {
            passes_f64x4<3>(y, h, L, last, norm_f64x4);
            L <<= 3;
        } else if (left == 2) {
            passes_f64x4<2>(y, h, L, last, norm_f64x4);
            L <<= 2;
        } else {
            passes_f64x4<1>(y, h, L, last, norm_f64x4);
            L <<= 1;
        }
    }
}

}  // namespace

void register_fwht_haswell(KernelTable& table) { table.fwht_f64 = fwht_f64_haswell; }

}  // namespace simdex
