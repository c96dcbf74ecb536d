// Kernel family 'pq', scalar: the reference for every ISA (see pq.hpp for the layouts).
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/pq/adc_u8.inc"

// Row of byte t within a block (see pq.hpp).
inline std::size_t row_of_byte(std::size_t t) { return (t & 1) ? 16 + (t >> 1) : (t >> 1); }

// table_of(q): the tables of query q; S: bytes per sub-space table (32: the (m4 / 4, 128)
// layout, 16: the compact (m4 / 4, 64) one).
template <std::size_t S, class TableOf>
void fastscan_scalar(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4, TableOf table_of,
                     std::size_t nq, std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    const std::size_t pairs = m4 / 2;
    std::uint16_t sums[32];
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * pairs * 32;
        for (std::size_t q = 0; q < nq; ++q) {
            const std::uint8_t* lut = table_of(q);
            for (std::size_t r = 0; r < 32; ++r) sums[r] = 0;
            for (std::size_t p = 0; p < pairs; ++p) {
                // pair p = 2g + h: low table at g*4S + hS, high table 2S further
                const std::uint8_t* low = lut + (p >> 1) * 4 * S + (p & 1) * S;
                const std::uint8_t* high = low + 2 * S;
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

void fastscan_u4_scalar(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                        const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                        FastScanEmit emit, void* context) {
    fastscan_scalar<32>(blocks, nblocks, m4, [&](std::size_t q) { return luts + q * m4 * 32; }, nq, thresholds, emit,
                        context);
}

void fastscan_tables_scalar(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                            const std::uint8_t* const* tables, std::size_t nq, std::uint16_t* thresholds,
                            FastScanEmit emit, void* context) {
    fastscan_scalar<16>(blocks, nblocks, m4, [&](std::size_t q) { return tables[q]; }, nq, thresholds, emit, context);
}

// One query, no threshold: the reference the SIMD tiers' byte-summing kernels must match.
void fastscan1_u4_scalar(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                         const std::uint8_t* lut, std::uint16_t* sums) {
    const std::size_t pairs = m4 / 2;
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * pairs * 32;
        std::uint16_t* out = sums + b * 32;
        for (std::size_t r = 0; r < 32; ++r) out[r] = 0;
        for (std::size_t p = 0; p < pairs; ++p) {
            const std::uint8_t* low = lut + (p >> 1) * 128 + (p & 1) * 32;
            const std::uint8_t* high = low + 64;
            const std::uint8_t* bytes = block + p * 32;
            for (std::size_t t = 0; t < 32; ++t) {
                const std::uint8_t v = bytes[t];
                out[row_of_byte(t)] = static_cast<std::uint16_t>(out[row_of_byte(t)] + low[v & 15] + high[v >> 4]);
            }
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
    table.pq.adc_u8 = adc_u8_rows;
    table.pq.fastscan_u4 = fastscan_u4_scalar;
    table.pq.fastscan_tables_u4 = fastscan_tables_scalar;
    table.pq.fastscan1_u4 = fastscan1_u4_scalar;
    table.pq.nearest_f32 = nearest_f32_scalar;
}

}  // namespace simdex
