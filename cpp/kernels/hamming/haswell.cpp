// Hamming distance, tier haswell (AVX2): popcount by nibble lookup (vpshufb) and vpsadbw.
// Tile: rows transposed 4 at a time into word-major order
//   Layout: block (w, 4) uint64, block[t, r] = word t of row r (zero-padded)
// so a broadcast query word scores 4 rows per XOR, counts accumulate lane-wise.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/hamming/popcount_haswell.inc"

// Per-64-bit-lane popcount.
__m256i popcount_u64(__m256i v) {
    return _mm256_sad_epu8(popcount_bytes(v), _mm256_setzero_si256());
}

std::uint32_t hamming(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) {
    __m256i sum = _mm256_setzero_si256();
    std::size_t j = 0;
    for (; j + 32 <= nbytes; j += 32) {
        __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j));
        __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j));
        sum = _mm256_add_epi64(sum, popcount_u64(_mm256_xor_si256(va, vb)));
    }
    std::uint64_t lanes[4];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), sum);
    std::uint64_t count = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; j + 8 <= nbytes; j += 8) {
        std::uint64_t wa, wb;
        std::memcpy(&wa, a + j, 8);
        std::memcpy(&wb, b + j, 8);
        count += static_cast<std::uint64_t>(_mm_popcnt_u64(wa ^ wb));
    }
    for (; j < nbytes; ++j) count += static_cast<std::uint64_t>(_mm_popcnt_u32(a[j] ^ b[j]));
    return static_cast<std::uint32_t>(count);
}

#include "kernels/hamming/tile_words.inc"

#include "kernels/hamming/tile_pairs.inc"

void hamming_tile(const std::uint8_t* queries, std::size_t nq, const std::uint8_t* x,
                  std::size_t n, std::size_t nbytes, const std::uint32_t* limits,
                  std::uint32_t* hit_rows, std::uint32_t* hit_counts, std::uint32_t* hits) {
    std::size_t words = (nbytes + 7) / 8;
    if (words > kMaxWords || nq == 0) {
        hamming_tile_pairs(queries, nq, x, n, nbytes, limits, hit_rows, hit_counts, hits);
        return;
    }
    std::vector<std::uint64_t> query_words = padded_query_words(queries, nq, nbytes, words, hits);
    alignas(32) std::uint64_t block[kMaxWords * 4];
    std::uint64_t row_words[kMaxWords];
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        for (std::size_t r = 0; r < 4; ++r) {
            load_words(x + (j + r) * nbytes, nbytes, words, row_words);
            for (std::size_t t = 0; t < words; ++t) block[t * 4 + r] = row_words[t];
        }
        for (std::size_t i = 0; i < nq; ++i) {
            const std::uint64_t* qw = query_words.data() + i * words;
            __m256i byte_counts = _mm256_setzero_si256();
            __m256i sum = _mm256_setzero_si256();
            for (std::size_t t = 0; t < words; ++t) {
                __m256i v = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(qw[t])),
                                             _mm256_load_si256(reinterpret_cast<const __m256i*>(block + t * 4)));
                byte_counts = _mm256_add_epi8(byte_counts, popcount_bytes(v));
                if ((t & 15) == 15) {  // bytes hold at most 16 * 8 = 128 < 256
                    sum = _mm256_add_epi64(sum, _mm256_sad_epu8(byte_counts, _mm256_setzero_si256()));
                    byte_counts = _mm256_setzero_si256();
                }
            }
            sum = _mm256_add_epi64(sum, _mm256_sad_epu8(byte_counts, _mm256_setzero_si256()));
            std::uint64_t lanes[4];
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), sum);
            std::uint32_t h = hits[i], limit = limits[i];
            for (std::size_t r = 0; r < 4; ++r) {
                if (lanes[r] < limit) {
                    hit_rows[i * n + h] = static_cast<std::uint32_t>(j + r);
                    hit_counts[i * n + h++] = static_cast<std::uint32_t>(lanes[r]);
                }
            }
            hits[i] = h;
        }
    }
    for (std::size_t i = 0; i < nq; ++i)
        hits[i] = append_pairs(queries + i * nbytes, x, j, n, nbytes, limits[i], hit_rows + i * n,
                               hit_counts + i * n, hits[i]);
}

}  // namespace

void register_hamming_haswell(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile;
}

}  // namespace simdex
