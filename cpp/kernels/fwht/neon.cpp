// Kernel family 'fwht', tier neon (2 doubles a register): see reference.inc.
// Passes of length 1 and 2 on blocks of 4 values (transposes between two registers), then
// the longer passes three at a time on 8 registers.
#include <arm_neon.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/fwht/reference.inc"

inline void butterfly_f64x2(float64x2_t& lo, float64x2_t& hi) {
    const float64x2_t sum = vaddq_f64(lo, hi);
    hi = vsubq_f64(lo, hi);
    lo = sum;
}

// Passes of length L, 2L, .., 2^(Passes-1) L (L a multiple of 2) over y (h,).
template <int Passes>
void passes_f64x2(double* y, std::size_t h, std::size_t L, bool last, float64x2_t norm_f64x2) {
    constexpr int R = 1 << Passes;
    for (std::size_t i = 0; i < h; i += R * L) {
        for (std::size_t j = 0; j < L; j += 2) {
            double* base = y + i + j;
            float64x2_t r[R];
            for (int k = 0; k < R; ++k) r[k] = vld1q_f64(base + k * L);
            for (int p = 0; p < Passes; ++p)
                for (int k = 0; k < R; ++k)
                    if (!(k & (1 << p))) butterfly_f64x2(r[k], r[k + (1 << p)]);
            if (last)
                for (int k = 0; k < R; ++k) r[k] = vmulq_f64(r[k], norm_f64x2);
            for (int k = 0; k < R; ++k) vst1q_f64(base + k * L, r[k]);
        }
    }
}

template <bool Signed>
void block4_f64x2(double* y, const float* signs, bool last, float64x2_t norm_f64x2) {
    float64x2_t v0 = vld1q_f64(y), v1 = vld1q_f64(y + 2);
    if (Signed) {
        v0 = vmulq_f64(v0, vcvt_f64_f32(vld1_f32(signs)));
        v1 = vmulq_f64(v1, vcvt_f64_f32(vld1_f32(signs + 2)));
    }
    // length 1: [a0 a2] +- [a1 a3]
    const float64x2_t even = vtrn1q_f64(v0, v1), odd = vtrn2q_f64(v0, v1);
    const float64x2_t sum = vaddq_f64(even, odd), difference = vsubq_f64(even, odd);
    // length 2: [a0 + a1, a0 - a1] +- [a2 + a3, a2 - a3]
    float64x2_t lo = vtrn1q_f64(sum, difference), hi = vtrn2q_f64(sum, difference);
    butterfly_f64x2(lo, hi);
    if (last) {
        lo = vmulq_f64(lo, norm_f64x2);
        hi = vmulq_f64(hi, norm_f64x2);
    }
    vst1q_f64(y, lo);
    vst1q_f64(y + 2, hi);
}

void fwht_f64_neon(double* y, const float* signs, std::size_t h) {
    if (h < 4) {
        fwht_f64_reference(y, signs, h);
        return;
    }
    const float64x2_t norm_f64x2 = vdupq_n_f64(1.0 / __builtin_sqrt(static_cast<double>(h)));
    const bool only = h == 4;
    if (signs) {
        for (std::size_t i = 0; i < h; i += 4) block4_f64x2<true>(y + i, signs + i, only, norm_f64x2);
    } else {
        for (std::size_t i = 0; i < h; i += 4) block4_f64x2<false>(y + i, nullptr, only, norm_f64x2);
    }
    std::size_t L = 4;
    while (L < h) {
        std::size_t left = 0;
        for (std::size_t t = L; t < h; t <<= 1) ++left;  // passes still to do
        const bool last = left <= 3;
        if (left >= 3) {
            passes_f64x2<3>(y, h, L, last, norm_f64x2);
            L <<= 3;
        } else if (left == 2) {
            passes_f64x2<2>(y, h, L, last, norm_f64x2);
            L <<= 2;
        } else {
            passes_f64x2<1>(y, h, L, last, norm_f64x2);
            L <<= 1;
        }
    }
}

}  // namespace

void register_fwht_neon(KernelTable& table) { table.fwht_f64 = fwht_f64_neon; }

}  // namespace simdex
