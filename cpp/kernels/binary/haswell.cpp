// Kernel family 'binary', tier haswell (AVX2 +FMA, POPCNT); see binary.hpp for the math.
// Symmetric: XOR + POPCNT on 64-bit words (AVX2 has no vector popcount; at the plane sizes of
//   embeddings, 6-16 words, scalar POPCNT at one per cycle beats the nibble-lookup sequence),
//   bytes for the tail; counts weighted per plane pair in float.
// Symmetric tile (batched scans): 4 rows transposed into word-major order
//   Layout: block (bits_x, words, 4) uint64, block[u, w, r] = word w of plane u of row r
// once per 4 rows, then for every query each broadcast query word is XORed with 4 rows at once
// and counted by nibble lookup (vpshufb) into per-plane-pair byte counters (<= 8 per word, so
// exact for up to 31 words); one vpsadbw per pair, the counts meet the float weights as 4 lanes.
// Asymmetric: each byte of a plane becomes an 8-lane mask (broadcast, AND with 1<<i, compare),
//   the query (in bit order) is ANDed under it and accumulated; weights applied once per plane.
#include <immintrin.h>

#include <cstring>
#include <vector>

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

#include "kernels/hamming/popcount_haswell.inc"

// Rows [0, n - n % 4) of the tile, Bits planes on both sides.
template <std::size_t Bits>
void planes_xor_tile_blocks(const std::uint64_t* query_words, std::size_t nq, const std::uint8_t* rows,
                            std::size_t n, std::size_t words, std::size_t plane_bytes,
                            const float* weights, const float* offsets, float* out) {
    const std::size_t row_bytes = Bits * plane_bytes;
    alignas(32) std::uint64_t block[kMaxPlanes * kMaxPlaneWords * 4];
    for (std::size_t j = 0; j + 4 <= n; j += 4) {
        for (std::size_t r = 0; r < 4; ++r)
            for (std::size_t u = 0; u < Bits; ++u) {
                const std::uint8_t* plane = rows + (j + r) * row_bytes + u * plane_bytes;
                std::uint64_t word = 0;
                for (std::size_t w = 0; w < words; ++w) {
                    std::size_t take = plane_bytes - 8 * w < 8 ? plane_bytes - 8 * w : 8;
                    word = 0;
                    std::memcpy(&word, plane + 8 * w, take);
                    block[(u * words + w) * 4 + r] = word;
                }
            }
        for (std::size_t i = 0; i < nq; ++i) {
            const std::uint64_t* qw = query_words + i * Bits * words;
            __m256i counts_u8[Bits][Bits];
            for (std::size_t t = 0; t < Bits; ++t)
                for (std::size_t u = 0; u < Bits; ++u) counts_u8[t][u] = _mm256_setzero_si256();
            for (std::size_t w = 0; w < words; ++w) {
                __m256i query_u64x4[Bits];
                for (std::size_t t = 0; t < Bits; ++t)
                    query_u64x4[t] = _mm256_set1_epi64x(static_cast<long long>(qw[t * words + w]));
                for (std::size_t u = 0; u < Bits; ++u) {
                    __m256i rows_u64x4 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block + (u * words + w) * 4));
                    for (std::size_t t = 0; t < Bits; ++t)
                        counts_u8[t][u] = _mm256_add_epi8(
                            counts_u8[t][u], popcount_bytes(_mm256_xor_si256(query_u64x4[t], rows_u64x4)));
                }
            }
            const __m256i pack_low_i32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
            __m128 score_f32x4 = _mm_set1_ps(offsets[i]);
            for (std::size_t t = 0; t < Bits; ++t)
                for (std::size_t u = 0; u < Bits; ++u) {
                    __m256i count_u64x4 = _mm256_sad_epu8(counts_u8[t][u], _mm256_setzero_si256());
                    __m128i count_i32x4 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(count_u64x4, pack_low_i32));
                    score_f32x4 = _mm_fmadd_ps(_mm_set1_ps(weights[t * Bits + u]), _mm_cvtepi32_ps(count_i32x4),
                                               score_f32x4);
                }
            _mm_storeu_ps(out + i * n + j, score_f32x4);
        }
    }
}

void planes_xor_tile(const std::uint8_t* queries, std::size_t nq, std::size_t bits_q,
                     const std::uint8_t* rows, std::size_t n, std::size_t bits_x,
                     std::size_t plane_bytes, const float* weights, const float* offsets,
                     float* out) {
    const std::size_t words = (plane_bytes + 7) / 8;
    if (bits_q != bits_x || bits_x > kMaxPlanes || words > kMaxPlaneWords) {
        planes_xor_tile_by_rows(queries, nq, bits_q, rows, n, bits_x, plane_bytes, weights, offsets, out);
        return;
    }
    std::vector<std::uint64_t> query_words(nq * bits_q * words, 0);  // zero-padded words
    for (std::size_t i = 0; i < nq; ++i)
        for (std::size_t t = 0; t < bits_q; ++t)
            std::memcpy(query_words.data() + (i * bits_q + t) * words,
                        queries + (i * bits_q + t) * plane_bytes, plane_bytes);
    switch (bits_x) {
        case 1: planes_xor_tile_blocks<1>(query_words.data(), nq, rows, n, words, plane_bytes, weights, offsets, out); break;
        case 2: planes_xor_tile_blocks<2>(query_words.data(), nq, rows, n, words, plane_bytes, weights, offsets, out); break;
        case 3: planes_xor_tile_blocks<3>(query_words.data(), nq, rows, n, words, plane_bytes, weights, offsets, out); break;
        default: planes_xor_tile_blocks<4>(query_words.data(), nq, rows, n, words, plane_bytes, weights, offsets, out); break;
    }
    const std::size_t done = n - n % 4;
    if (done == n) return;
    for (std::size_t i = 0; i < nq; ++i)
        planes_xor_rows(queries + i * bits_q * plane_bytes, bits_q, rows + done * bits_x * plane_bytes,
                        n - done, bits_x, plane_bytes, weights, offsets[i], out + i * n + done);
}

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
    t.binary.planes_xor_tile = planes_xor_tile;
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
