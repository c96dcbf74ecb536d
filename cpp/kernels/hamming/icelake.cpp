// Hamming distance, tier icelake (AVX-512 F/BW/VL + VPOPCNTDQ); skylake inherits haswell's.
// Pair: 64-byte XOR + popcount per step, masked byte load for the tail.
// Tile: rows are transposed 8 at a time into word-major order
//   Layout: block (w, 8) uint64, block[t, r] = word t of row r (zero-padded)
// so one broadcast query word XORed with block[t] scores 8 rows at once and the
// per-row counts accumulate lane-wise: no horizontal reduction. Counts under the query's
// limit are compressed straight into its hit list (no (nq, n) count matrix).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

std::uint32_t hamming(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) {
    __m512i sum = _mm512_setzero_si512();
    std::size_t j = 0;
    for (; j + 64 <= nbytes; j += 64) {
        __m512i va = _mm512_loadu_si512(a + j), vb = _mm512_loadu_si512(b + j);
        sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(_mm512_xor_si512(va, vb)));
    }
    if (j < nbytes) {
        __mmask64 m = _bzhi_u64(~0ull, static_cast<unsigned>(nbytes - j));
        __m512i va = _mm512_maskz_loadu_epi8(m, a + j), vb = _mm512_maskz_loadu_epi8(m, b + j);
        sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(_mm512_xor_si512(va, vb)));
    }
    return static_cast<std::uint32_t>(_mm512_reduce_add_epi64(sum));
}

#include "kernels/hamming/tile_words.inc"

#include "kernels/hamming/tile_pairs.inc"

// Appends the lanes of `counts` (rows j .. j+7) under `limit` to query i's hits.
inline void append_block(__m256i counts, std::uint32_t j, std::uint32_t limit,
                         std::uint32_t* rows, std::uint32_t* out_counts, std::uint32_t& h) {
    __mmask8 below = _mm256_cmplt_epu32_mask(counts, _mm256_set1_epi32(static_cast<int>(limit)));
    if (below == 0) return;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    auto taken = static_cast<__mmask8>((1u << _mm_popcnt_u32(below)) - 1);
    // register compress + masked store (the memory form of vpcompressd is slow on Zen 4)
    _mm256_mask_storeu_epi32(out_counts + h, taken, _mm256_maskz_compress_epi32(below, counts));
    _mm256_mask_storeu_epi32(rows + h, taken,
                             _mm256_maskz_compress_epi32(below, _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(j)))));
    h += static_cast<std::uint32_t>(_mm_popcnt_u32(below));
}

inline __m512i xor_popcount(const std::uint64_t* qw, std::size_t t, __m512i rows) {
    return _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(qw[t])), rows));
}

// The 8-row blocks of the tile; W = words per code known at compile time (fully unrolled,
// common code sizes) or 0 (any, `words` at run time). Returns the rows done (a multiple of 8).
template <std::size_t W>
std::size_t tile_blocks(const std::uint64_t* query_words, std::size_t nq, const std::uint8_t* x,
                        std::size_t n, std::size_t nbytes, std::size_t words,
                        const std::uint32_t* limits, std::uint32_t* hit_rows,
                        std::uint32_t* hit_counts, std::uint32_t* hits) {
    if constexpr (W != 0) words = W;
    alignas(64) std::uint64_t block[kMaxWords * 8];
    std::uint64_t row_words[kMaxWords];
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (std::size_t r = 0; r < 8; ++r) {
            const std::uint8_t* code = x + (j + r) * nbytes;
            if (nbytes == words * 8) {
                for (std::size_t t = 0; t < words; ++t) std::memcpy(&block[t * 8 + r], code + t * 8, 8);
                continue;
            }
            load_words(code, nbytes, words, row_words);
            for (std::size_t t = 0; t < words; ++t) block[t * 8 + r] = row_words[t];
        }
        const auto j32 = static_cast<std::uint32_t>(j);
        std::size_t i = 0;
        // Four queries per pass: each transposed row word is loaded once for all four.
        for (; i + 4 <= nq; i += 4) {
            const std::uint64_t* q0 = query_words + i * words;
            const std::uint64_t *q1 = q0 + words, *q2 = q1 + words, *q3 = q2 + words;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (std::size_t t = 0; t < words; ++t) {
                __m512i rows = _mm512_load_si512(block + t * 8);
                s0 = _mm512_add_epi64(s0, xor_popcount(q0, t, rows));
                s1 = _mm512_add_epi64(s1, xor_popcount(q1, t, rows));
                s2 = _mm512_add_epi64(s2, xor_popcount(q2, t, rows));
                s3 = _mm512_add_epi64(s3, xor_popcount(q3, t, rows));
            }
            const __m512i sums[4] = {s0, s1, s2, s3};
            for (std::size_t u = 0; u < 4; ++u)
                append_block(_mm512_cvtepi64_epi32(sums[u]), j32, limits[i + u],
                             hit_rows + (i + u) * n, hit_counts + (i + u) * n, hits[i + u]);
        }
        for (; i < nq; ++i) {
            const std::uint64_t* qw = query_words + i * words;
            __m512i sum = _mm512_setzero_si512();
            for (std::size_t t = 0; t < words; ++t)
                sum = _mm512_add_epi64(sum, xor_popcount(qw, t, _mm512_load_si512(block + t * 8)));
            append_block(_mm512_cvtepi64_epi32(sum), j32, limits[i], hit_rows + i * n,
                         hit_counts + i * n, hits[i]);
        }
    }
    return j;
}

void hamming_tile(const std::uint8_t* queries, std::size_t nq, const std::uint8_t* x,
                  std::size_t n, std::size_t nbytes, const std::uint32_t* limits,
                  std::uint32_t* hit_rows, std::uint32_t* hit_counts, std::uint32_t* hits) {
    std::size_t words = (nbytes + 7) / 8;
    if (words > kMaxWords || nq == 0) {
        hamming_tile_pairs(queries, nq, x, n, nbytes, limits, hit_rows, hit_counts, hits);
        return;
    }
    std::vector<std::uint64_t> query_words = padded_query_words(queries, nq, nbytes, words, hits);
    auto blocks = tile_blocks<0>;
    switch (words) {  // 256, 384, 512, 768 and 1024 bits
        case 4: blocks = tile_blocks<4>; break;
        case 6: blocks = tile_blocks<6>; break;
        case 8: blocks = tile_blocks<8>; break;
        case 12: blocks = tile_blocks<12>; break;
        case 16: blocks = tile_blocks<16>; break;
        default: break;
    }
    std::size_t j = blocks(query_words.data(), nq, x, n, nbytes, words, limits, hit_rows,
                           hit_counts, hits);
    for (std::size_t i = 0; i < nq; ++i)
        hits[i] = append_pairs(queries + i * nbytes, x, j, n, nbytes, limits[i], hit_rows + i * n,
                               hit_counts + i * n, hits[i]);
}

}  // namespace

void register_hamming_icelake(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile;
}

}  // namespace simdex
