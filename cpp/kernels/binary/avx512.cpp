// Kernel family 'binary', AVX-512 (F, BW, DQ, VL, VPOPCNTDQ); see binary.hpp for the math.
// Symmetric: 64-byte chunks of a plane (masked byte load for the tail), XOR + VPOPCNTQ,
//   per plane pair the 8 lane counts are converted to float and multiply-added with the pair
//   weight, so one horizontal reduction per row.
// Asymmetric: two bytes of a plane are a 16-lane mask (bit i of byte g is lane i of the byte's
//   half, which is why the query comes in bit order); masked adds of the query, one
//   accumulator per plane, weights applied once per plane.
#include <immintrin.h>

#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

float reduce_f32x8(__m256 v) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    return _mm_cvtss_f32(sum);
}

constexpr std::size_t kMaxRegisterPlanes = 4;  // query planes kept in registers (<= 64 bytes each)

void planes_xor_rows(const std::uint8_t* query, std::size_t bits_q, const std::uint8_t* rows,
                     std::size_t n, std::size_t bits_x, std::size_t plane_bytes,
                     const float* weights, float offset, float* out) {
    std::size_t row_bytes = bits_x * plane_bytes;
    if (plane_bytes <= 64 && bits_q <= kMaxRegisterPlanes) {
        // Fast path (d <= 512): every plane is one masked load.
        __mmask64 tail = _bzhi_u64(~0ull, static_cast<unsigned>(plane_bytes));
        __m512i query_u8x64[kMaxRegisterPlanes];
        for (std::size_t t = 0; t < bits_q; ++t)
            query_u8x64[t] = _mm512_maskz_loadu_epi8(tail, query + t * plane_bytes);
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint8_t* row = rows + i * row_bytes;
            __m256 sum_f32x8 = _mm256_setzero_ps();
            for (std::size_t u = 0; u < bits_x; ++u) {
                __m512i row_u8x64 = _mm512_maskz_loadu_epi8(tail, row + u * plane_bytes);
                for (std::size_t t = 0; t < bits_q; ++t) {
                    __m512i count_u64x8 =
                        _mm512_popcnt_epi64(_mm512_xor_si512(query_u8x64[t], row_u8x64));
                    sum_f32x8 = _mm256_fmadd_ps(_mm512_cvtepi64_ps(count_u64x8),
                                                _mm256_set1_ps(weights[t * bits_x + u]), sum_f32x8);
                }
            }
            out[i] = offset + reduce_f32x8(sum_f32x8);
        }
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* row = rows + i * row_bytes;
        __m256 sum_f32x8 = _mm256_setzero_ps();
        for (std::size_t t = 0; t < bits_q; ++t) {
            for (std::size_t u = 0; u < bits_x; ++u) {
                const std::uint8_t* a = query + t * plane_bytes;
                const std::uint8_t* b = row + u * plane_bytes;
                __m512i count_u64x8 = _mm512_setzero_si512();
                std::size_t j = 0;
                for (; j + 64 <= plane_bytes; j += 64) {
                    __m512i x = _mm512_xor_si512(_mm512_loadu_si512(a + j), _mm512_loadu_si512(b + j));
                    count_u64x8 = _mm512_add_epi64(count_u64x8, _mm512_popcnt_epi64(x));
                }
                if (j < plane_bytes) {
                    __mmask64 m = _bzhi_u64(~0ull, static_cast<unsigned>(plane_bytes - j));
                    __m512i x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + j),
                                                 _mm512_maskz_loadu_epi8(m, b + j));
                    count_u64x8 = _mm512_add_epi64(count_u64x8, _mm512_popcnt_epi64(x));
                }
                sum_f32x8 = _mm256_fmadd_ps(_mm512_cvtepi64_ps(count_u64x8),
                                            _mm256_set1_ps(weights[t * bits_x + u]), sum_f32x8);
            }
        }
        out[i] = offset + reduce_f32x8(sum_f32x8);
    }
}

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

void register_binary_avx512(KernelTable& t) {
    t.binary.planes_xor_rows = planes_xor_rows;
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
