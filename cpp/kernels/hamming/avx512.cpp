// Hamming distance, AVX-512 VPOPCNTDQ.
// Pair: 64-byte XOR + popcount per step, masked byte load for the tail.
// Tile: rows are transposed 8 at a time into word-major order
//   Layout: block (w, 8) uint64, block[t, r] = word t of row r (zero-padded)
// so one broadcast query word XORed with block[t] scores 8 rows at once and the
// per-row counts accumulate lane-wise: no horizontal reduction.
#include <immintrin.h>

#include <cstring>

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

constexpr std::size_t kMaxWords = 128;  // tile path for codes up to 1024 bytes

void load_words(const std::uint8_t* code, std::size_t nbytes, std::size_t words,
                std::uint64_t* dst) {
    std::memcpy(dst, code, nbytes);
    std::memset(reinterpret_cast<std::uint8_t*>(dst) + nbytes, 0, words * 8 - nbytes);
}

void hamming_tile(const std::uint8_t* queries, std::size_t nq, const std::uint8_t* x,
                  std::size_t n, std::size_t nbytes, std::uint32_t* out) {
    std::size_t words = (nbytes + 7) / 8;
    if (words > kMaxWords || nq == 0) {
        for (std::size_t i = 0; i < nq; ++i)
            for (std::size_t j = 0; j < n; ++j)
                out[i * n + j] = hamming(queries + i * nbytes, x + j * nbytes, nbytes);
        return;
    }
    // Layout: query_words (nq, words) uint64, zero-padded
    std::uint64_t* query_words = new std::uint64_t[nq * words];
    for (std::size_t i = 0; i < nq; ++i)
        load_words(queries + i * nbytes, nbytes, words, query_words + i * words);
    alignas(64) std::uint64_t block[kMaxWords * 8];
    std::uint64_t row_words[kMaxWords];
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (std::size_t r = 0; r < 8; ++r) {
            load_words(x + (j + r) * nbytes, nbytes, words, row_words);
            for (std::size_t t = 0; t < words; ++t) block[t * 8 + r] = row_words[t];
        }
        for (std::size_t i = 0; i < nq; ++i) {
            const std::uint64_t* qw = query_words + i * words;
            __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
            std::size_t t = 0;
            for (; t + 2 <= words; t += 2) {
                __m512i a = _mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(qw[t])),
                                             _mm512_load_si512(block + t * 8));
                __m512i b = _mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(qw[t + 1])),
                                             _mm512_load_si512(block + (t + 1) * 8));
                sum0 = _mm512_add_epi64(sum0, _mm512_popcnt_epi64(a));
                sum1 = _mm512_add_epi64(sum1, _mm512_popcnt_epi64(b));
            }
            if (t < words) {
                __m512i a = _mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(qw[t])),
                                             _mm512_load_si512(block + t * 8));
                sum0 = _mm512_add_epi64(sum0, _mm512_popcnt_epi64(a));
            }
            __m256i counts = _mm512_cvtepi64_epi32(_mm512_add_epi64(sum0, sum1));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * n + j), counts);
        }
    }
    for (; j < n; ++j)
        for (std::size_t i = 0; i < nq; ++i)
            out[i * n + j] = hamming(queries + i * nbytes, x + j * nbytes, nbytes);
    delete[] query_words;
}

}  // namespace

void register_hamming_avx512(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile;
}

}  // namespace simdex
