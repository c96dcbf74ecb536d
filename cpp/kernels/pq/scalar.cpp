// Kernel family 'pq', scalar: the reference for every ISA (see pq.hpp for the layouts).
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

// 8-bit ADC: four rows at a time (independent float chains hide the load latency); codes are
// read four at a time as one 32-bit word and split with shifts, which saves load slots for
// the table lookups. Two partial sums per row (even / odd sub-spaces) shorten the chains.
void adc_u8_scalar(const float* lut, const std::uint8_t* codes, std::size_t n, std::size_t m,
                   float* out) {
    const std::size_t m_words = m / 4 * 4;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const std::uint8_t* row = codes + i * m;
        float sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
        float odd0 = 0, odd1 = 0, odd2 = 0, odd3 = 0;
        std::size_t j = 0;
        for (; j < m_words; j += 4) {
            const float* table = lut + j * 256;
            std::uint32_t word0, word1, word2, word3;
            std::memcpy(&word0, row + j, 4);
            std::memcpy(&word1, row + m + j, 4);
            std::memcpy(&word2, row + 2 * m + j, 4);
            std::memcpy(&word3, row + 3 * m + j, 4);
            sum0 += table[word0 & 255];
            sum1 += table[word1 & 255];
            sum2 += table[word2 & 255];
            sum3 += table[word3 & 255];
            odd0 += table[256 + ((word0 >> 8) & 255)];
            odd1 += table[256 + ((word1 >> 8) & 255)];
            odd2 += table[256 + ((word2 >> 8) & 255)];
            odd3 += table[256 + ((word3 >> 8) & 255)];
            sum0 += table[512 + ((word0 >> 16) & 255)];
            sum1 += table[512 + ((word1 >> 16) & 255)];
            sum2 += table[512 + ((word2 >> 16) & 255)];
            sum3 += table[512 + ((word3 >> 16) & 255)];
            odd0 += table[768 + (word0 >> 24)];
            odd1 += table[768 + (word1 >> 24)];
            odd2 += table[768 + (word2 >> 24)];
            odd3 += table[768 + (word3 >> 24)];
        }
        for (; j < m; ++j) {
            const float* table = lut + j * 256;
            sum0 += table[row[j]];
            sum1 += table[row[m + j]];
            sum2 += table[row[2 * m + j]];
            sum3 += table[row[3 * m + j]];
        }
        out[i] = sum0 + odd0;
        out[i + 1] = sum1 + odd1;
        out[i + 2] = sum2 + odd2;
        out[i + 3] = sum3 + odd3;
    }
    for (; i < n; ++i) {
        const std::uint8_t* row = codes + i * m;
        float sum = 0, odd = 0;
        std::size_t j = 0;
        for (; j + 2 <= m; j += 2) {
            sum += lut[j * 256 + row[j]];
            odd += lut[(j + 1) * 256 + row[j + 1]];
        }
        if (j < m) sum += lut[j * 256 + row[j]];
        out[i] = sum + odd;
    }
}

// Row of byte t within a block (see pq.hpp).
inline std::size_t row_of_byte(std::size_t t) { return (t & 1) ? 16 + (t >> 1) : (t >> 1); }

void fastscan_u4_scalar(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                        const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                        FastScanEmit emit, void* context) {
    const std::size_t pairs = m4 / 2;
    const std::size_t lut_bytes = m4 * 32;
    std::uint16_t sums[32];
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * pairs * 32;
        for (std::size_t q = 0; q < nq; ++q) {
            const std::uint8_t* lut = luts + q * lut_bytes;
            for (std::size_t r = 0; r < 32; ++r) sums[r] = 0;
            for (std::size_t p = 0; p < pairs; ++p) {
                // pair p = 2g + h: low table at g*128 + 32h, high table at g*128 + 64 + 32h
                const std::uint8_t* low = lut + (p >> 1) * 128 + (p & 1) * 32;
                const std::uint8_t* high = low + 64;
                const std::uint8_t* bytes = block + p * 32;
                for (std::size_t t = 0; t < 32; ++t) {
                    std::uint8_t v = bytes[t];
                    sums[row_of_byte(t)] =
                        static_cast<std::uint16_t>(sums[row_of_byte(t)] + low[v & 15] + high[v >> 4]);
                }
            }
            std::uint32_t mask = 0;
            const std::uint16_t limit = thresholds[q];
            for (std::size_t r = 0; r < 32; ++r)
                if (sums[r] <= limit) mask |= 1u << r;
            if (mask) emit(context, q, b, mask, sums);
        }
    }
}

// Nearest centroid: scores of 16 centroids at a time for one point, expanded form
// ||c||^2 - 2 <x, c> (the ||x||^2 term is the same for every centroid; rows come scaled by -2).
void nearest_f32_scalar(const float* x, std::size_t n, std::size_t d, const float* centroids_t,
                        std::size_t stride, const float* norms, std::size_t count,
                        std::int64_t first_label, float* best, std::int64_t* labels) {
    float scores[16];
    for (std::size_t i = 0; i < n; ++i) {
        const float* point = x + i * d;
        float best_score = best[i];
        std::int64_t best_label = labels[i];
        for (std::size_t c0 = 0; c0 < count; c0 += 16) {
            for (int c = 0; c < 16; ++c) scores[c] = norms[c0 + c];
            for (std::size_t j = 0; j < d; ++j) {
                const float weight = point[j];  // already -2 x_j
                const float* column = centroids_t + j * stride + c0;
                for (int c = 0; c < 16; ++c) scores[c] += weight * column[c];
            }
            for (int c = 0; c < 16; ++c) {
                if (scores[c] < best_score) {
                    best_score = scores[c];
                    best_label = first_label + static_cast<std::int64_t>(c0 + c);
                }
            }
        }
        best[i] = best_score;
        labels[i] = best_label;
    }
}

}  // namespace

void register_pq_scalar(KernelTable& table) {
    table.pq.adc_u8 = adc_u8_scalar;
    table.pq.fastscan_u4 = fastscan_u4_scalar;
    table.pq.nearest_f32 = nearest_f32_scalar;
}

}  // namespace simdex
