// Kernel family 'binary', tier skylake (AVX-512 F/BW/DQ/VL); see binary.hpp for the math.
// Asymmetric only: two bytes of a plane are a 16-lane mask (bit i of byte g is lane i of the
//   byte's half, which is why the query comes in bit order); masked adds of the query, one
//   accumulator per plane, weights applied once per plane. The symmetric kernel is inherited
//   from haswell here and overridden in binary/icelake.cpp (VPOPCNTDQ).
#include <immintrin.h>

#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

// sum of q_bits over the set bits of one plane, as 16 partial sums (four independent
// accumulator chains: masked adds are latency-bound otherwise)
__m512 masked_sum(const float* q_bits, const std::uint8_t* plane, std::size_t plane_bytes) {
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    __m512 sum2 = _mm512_setzero_ps(), sum3 = _mm512_setzero_ps();
    std::size_t g = 0;
    for (; g + 8 <= plane_bytes; g += 8) {
        std::uint16_t m[4];
        std::memcpy(m, plane + g, 8);
        const float* q = q_bits + 8 * g;
        sum0 = _mm512_mask_add_ps(sum0, static_cast<__mmask16>(m[0]), sum0, _mm512_loadu_ps(q));
        sum1 = _mm512_mask_add_ps(sum1, static_cast<__mmask16>(m[1]), sum1, _mm512_loadu_ps(q + 16));
        sum2 = _mm512_mask_add_ps(sum2, static_cast<__mmask16>(m[2]), sum2, _mm512_loadu_ps(q + 32));
        sum3 = _mm512_mask_add_ps(sum3, static_cast<__mmask16>(m[3]), sum3, _mm512_loadu_ps(q + 48));
    }
    for (; g + 2 <= plane_bytes; g += 2) {
        std::uint16_t m0;
        std::memcpy(&m0, plane + g, 2);
        sum0 = _mm512_mask_add_ps(sum0, static_cast<__mmask16>(m0), sum0, _mm512_loadu_ps(q_bits + 8 * g));
    }
    if (g < plane_bytes) {  // one byte left: 8 lanes, q_bits holds exactly 8 more floats
        __m512 q = _mm512_maskz_loadu_ps(static_cast<__mmask16>(0xFF), q_bits + 8 * g);
        sum1 = _mm512_mask_add_ps(sum1, static_cast<__mmask16>(plane[g]), sum1, q);
    }
    return _mm512_add_ps(_mm512_add_ps(sum0, sum1), _mm512_add_ps(sum2, sum3));
}

void planes_float_rows(const float* q_bits, const std::uint8_t* rows, std::size_t n,
                       std::size_t bits, std::size_t plane_bytes, const float* weights,
                       float offset, float* out) {
    std::size_t row_bytes = bits * plane_bytes;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* row = rows + i * row_bytes;
        __m512 sum_f32x16 = _mm512_setzero_ps();
        for (std::size_t t = 0; t < bits; ++t)
            sum_f32x16 = _mm512_fmadd_ps(_mm512_set1_ps(weights[t]),
                                         masked_sum(q_bits, row + t * plane_bytes, plane_bytes),
                                         sum_f32x16);
        out[i] = offset + _mm512_reduce_add_ps(sum_f32x16);
    }
}

}  // namespace

void register_binary_skylake(KernelTable& t) {
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
