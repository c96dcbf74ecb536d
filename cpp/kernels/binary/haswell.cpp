// Kernel family 'binary', tier haswell (AVX2 +FMA, POPCNT); see binary.hpp for the math.
// Symmetric: XOR + POPCNT on 64-bit words (AVX2 has no vector popcount; at the plane sizes of
//   embeddings, 6-16 words, scalar POPCNT at one per cycle beats the nibble-lookup sequence),
//   bytes for the tail; counts weighted per plane pair in float.
// Asymmetric: each byte of a plane becomes an 8-lane mask (broadcast, AND with 1<<i, compare),
//   the query (in bit order) is ANDed under it and accumulated; weights applied once per plane.
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

std::uint64_t hamming(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) {
    std::uint64_t count0 = 0, count1 = 0;
    std::size_t j = 0;
    for (; j + 16 <= nbytes; j += 16) {
        std::uint64_t a0, b0, a1, b1;
        std::memcpy(&a0, a + j, 8);
        std::memcpy(&b0, b + j, 8);
        std::memcpy(&a1, a + j + 8, 8);
        std::memcpy(&b1, b + j + 8, 8);
        count0 += static_cast<std::uint64_t>(_mm_popcnt_u64(a0 ^ b0));
        count1 += static_cast<std::uint64_t>(_mm_popcnt_u64(a1 ^ b1));
    }
    for (; j + 8 <= nbytes; j += 8) {
        std::uint64_t a0, b0;
        std::memcpy(&a0, a + j, 8);
        std::memcpy(&b0, b + j, 8);
        count0 += static_cast<std::uint64_t>(_mm_popcnt_u64(a0 ^ b0));
    }
    for (; j < nbytes; ++j) count1 += static_cast<std::uint64_t>(_mm_popcnt_u32(a[j] ^ b[j]));
    return count0 + count1;
}

#include "kernels/binary/planes_xor_rows.inc"

// 8 partial sums of q_bits over the set bits of one plane
__m256 masked_sum(const float* q_bits, const std::uint8_t* plane, std::size_t plane_bytes) {
    const __m256i bit_i32x8 = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
    std::size_t g = 0;
    for (; g + 2 <= plane_bytes; g += 2) {
        __m256i m0 = _mm256_set1_epi32(plane[g]), m1 = _mm256_set1_epi32(plane[g + 1]);
        m0 = _mm256_cmpeq_epi32(_mm256_and_si256(m0, bit_i32x8), bit_i32x8);
        m1 = _mm256_cmpeq_epi32(_mm256_and_si256(m1, bit_i32x8), bit_i32x8);
        sum0 = _mm256_add_ps(sum0, _mm256_and_ps(_mm256_castsi256_ps(m0), _mm256_loadu_ps(q_bits + 8 * g)));
        sum1 = _mm256_add_ps(sum1, _mm256_and_ps(_mm256_castsi256_ps(m1), _mm256_loadu_ps(q_bits + 8 * g + 8)));
    }
    if (g < plane_bytes) {
        __m256i m0 = _mm256_set1_epi32(plane[g]);
        m0 = _mm256_cmpeq_epi32(_mm256_and_si256(m0, bit_i32x8), bit_i32x8);
        sum0 = _mm256_add_ps(sum0, _mm256_and_ps(_mm256_castsi256_ps(m0), _mm256_loadu_ps(q_bits + 8 * g)));
    }
    return _mm256_add_ps(sum0, sum1);
}

void planes_float_rows(const float* q_bits, const std::uint8_t* rows, std::size_t n,
                       std::size_t bits, std::size_t plane_bytes, const float* weights,
                       float offset, float* out) {
    std::size_t row_bytes = bits * plane_bytes;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* row = rows + i * row_bytes;
        __m256 sum_f32x8 = _mm256_setzero_ps();
        for (std::size_t t = 0; t < bits; ++t)
            sum_f32x8 = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]),
                                        masked_sum(q_bits, row + t * plane_bytes, plane_bytes),
                                        sum_f32x8);
        out[i] = offset + reduce_f32x8(sum_f32x8);
    }
}

}  // namespace

void register_binary_haswell(KernelTable& t) {
    t.binary.planes_xor_rows = planes_xor_rows;
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
