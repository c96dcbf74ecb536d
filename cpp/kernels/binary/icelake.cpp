// Kernel family 'binary', tier icelake (skylake + VPOPCNTDQ); see binary.hpp for the math.
// Symmetric: 64-byte chunks of a plane (masked byte load for the tail), XOR + VPOPCNTQ,
//   per plane pair the 8 lane counts are converted to float and multiply-added with the pair
//   weight, so one horizontal reduction per row. The asymmetric kernel is inherited from
//   binary/skylake.cpp.
#include <immintrin.h>

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

// The tile contract one query at a time through the VPOPCNTQ rows kernel above (the haswell
// transposed tile is not measured against it on this tier).
void planes_xor_tile(const std::uint8_t* queries, std::size_t nq, std::size_t bits_q,
                     const std::uint8_t* rows, std::size_t n, std::size_t bits_x,
                     std::size_t plane_bytes, const float* weights, const float* offsets,
                     float* out) {
    for (std::size_t i = 0; i < nq; ++i)
        planes_xor_rows(queries + i * bits_q * plane_bytes, bits_q, rows, n, bits_x, plane_bytes,
                        weights, offsets[i], out + i * n);
}

}  // namespace

void register_binary_icelake(KernelTable& t) {
    t.binary.planes_xor_rows = planes_xor_rows;
    t.binary.planes_xor_tile = planes_xor_tile;
}

}  // namespace simdex
