// Kernel family 'pq', NEON (aarch64): see pq.hpp for the math and layouts.
// Fast-scan lookups use tbl (vqtbl1q_u8) on 16-byte halves of each 32-byte pair.
#include <arm_neon.h>


#include "kernels/kernels.hpp"

namespace simdex {
namespace {


// The end of a block for one query: even / odd row sums from the two accumulators of each
// half (pq.hpp), the rows at or under the query's threshold as a mask, and the emit.
inline void emit_block(const uint16x8_t* all_u16x8, const uint16x8_t* high_u16x8, std::size_t q, std::size_t b,
                       const std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    static const std::uint16_t bit_values[8] = {1, 2, 4, 8, 16, 32, 64, 128};
    const uint16x8_t bits_u16x8 = vld1q_u16(bit_values);
    const uint16x8_t limit = vdupq_n_u16(thresholds[q]);
    std::uint32_t mask = 0;
    uint16x8_t even[2], odd[2];
    for (int h = 0; h < 2; ++h) {
        odd[h] = high_u16x8[h];
        even[h] = vsubq_u16(all_u16x8[h], vshlq_n_u16(odd[h], 8));
        const std::uint32_t even_bits = vaddvq_u16(vandq_u16(vcleq_u16(even[h], limit), bits_u16x8));
        const std::uint32_t odd_bits = vaddvq_u16(vandq_u16(vcleq_u16(odd[h], limit), bits_u16x8));
        mask |= (even_bits << (8 * h)) | (odd_bits << (16 + 8 * h));
    }
    if (mask) {
        std::uint16_t sums[32];
        vst1q_u16(sums, even[0]);
        vst1q_u16(sums + 8, even[1]);
        vst1q_u16(sums + 16, odd[0]);
        vst1q_u16(sums + 24, odd[1]);
        emit(context, q, b, mask, sums);
    }
}

// Q queries per pass (tables[qi]: the tables of query query0 + qi). A pair's 32 bytes are two 16-byte halves h = 0, 1; uint16 lane k of
// half h holds bytes 16h + 2k (row 8h + k) and 16h + 2k + 1 (row 16 + 8h + k).
template <int Q>
void fastscan_queries_neon(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                           const std::uint8_t* const* tables, std::size_t query0,
                           std::uint16_t* thresholds, FastScanEmit emit, void* context) {
    const std::size_t pairs = m4 / 2;
    const uint8x16_t nibble_u8x16 = vdupq_n_u8(0x0F);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * pairs * 32;
        uint16x8_t all_u16x8[Q][2], high_u16x8[Q][2];
        for (int qi = 0; qi < Q; ++qi)
            for (int h = 0; h < 2; ++h) {
                all_u16x8[qi][h] = vdupq_n_u16(0);
                high_u16x8[qi][h] = vdupq_n_u16(0);
            }
        for (std::size_t p = 0; p < pairs; ++p) {
            const std::size_t table_offset = (p >> 1) * 128 + (p & 1) * 32;
            for (int h = 0; h < 2; ++h) {
                const uint8x16_t codes_u8x16 = vld1q_u8(block + p * 32 + h * 16);
                const uint8x16_t low = vandq_u8(codes_u8x16, nibble_u8x16);
                const uint8x16_t high = vshrq_n_u8(codes_u8x16, 4);
                for (int qi = 0; qi < Q; ++qi) {
                    const std::uint8_t* table = tables[qi] + table_offset;
                    const uint16x8_t r0 = vreinterpretq_u16_u8(vqtbl1q_u8(vld1q_u8(table), low));
                    const uint16x8_t r1 = vreinterpretq_u16_u8(vqtbl1q_u8(vld1q_u8(table + 64), high));
                    all_u16x8[qi][h] = vaddq_u16(all_u16x8[qi][h], vaddq_u16(r0, r1));
                    high_u16x8[qi][h] = vaddq_u16(high_u16x8[qi][h],
                                                  vaddq_u16(vshrq_n_u16(r0, 8), vshrq_n_u16(r1, 8)));
                }
            }
        }
        for (int qi = 0; qi < Q; ++qi)
            emit_block(all_u16x8[qi], high_u16x8[qi], query0 + qi, b, thresholds, emit, context);
    }
}

// One query: the four lookups of a group (pairs 2g and 2g+1, low and high nibbles) are
// added as bytes (entries <= 63, see pq.hpp) and widened once; halves as above.
void fastscan1_u4_neon(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                       const std::uint8_t* lut, std::uint16_t* sums) {
    const std::size_t groups = m4 / 4;
    const uint8x16_t nibble_u8x16 = vdupq_n_u8(0x0F);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        uint16x8_t all_u16x8[2] = {vdupq_n_u16(0), vdupq_n_u16(0)};
        uint16x8_t high_u16x8[2] = {vdupq_n_u16(0), vdupq_n_u16(0)};
        for (std::size_t g = 0; g < groups; ++g) {
            const std::uint8_t* table = lut + g * 128;
            const uint8x16_t t0 = vld1q_u8(table), t1 = vld1q_u8(table + 32);
            const uint8x16_t t2 = vld1q_u8(table + 64), t3 = vld1q_u8(table + 96);
            for (int h = 0; h < 2; ++h) {
                const uint8x16_t codes0 = vld1q_u8(block + g * 64 + h * 16);
                const uint8x16_t codes1 = vld1q_u8(block + g * 64 + 32 + h * 16);
                const uint8x16_t s =
                    vaddq_u8(vaddq_u8(vqtbl1q_u8(t0, vandq_u8(codes0, nibble_u8x16)),
                                      vqtbl1q_u8(t1, vandq_u8(codes1, nibble_u8x16))),
                             vaddq_u8(vqtbl1q_u8(t2, vshrq_n_u8(codes0, 4)), vqtbl1q_u8(t3, vshrq_n_u8(codes1, 4))));
                const uint16x8_t wide = vreinterpretq_u16_u8(s);
                all_u16x8[h] = vaddq_u16(all_u16x8[h], wide);
                high_u16x8[h] = vaddq_u16(high_u16x8[h], vshrq_n_u16(wide, 8));
            }
        }
        for (int h = 0; h < 2; ++h) {
            vst1q_u16(sums + b * 32 + 8 * h, vsubq_u16(all_u16x8[h], vshlq_n_u16(high_u16x8[h], 8)));
            vst1q_u16(sums + b * 32 + 16 + 8 * h, high_u16x8[h]);
        }
    }
}

// Q queries per pass with tables of entries <= 63 (fastscan_tables_u4's contract): per group
// and half, the four lookups of a query are added as bytes and widened once (as fastscan1_u4),
// the threshold test and emit as in fastscan_queries_neon. 4 queries x 2 halves x 2
// accumulators fit NEON's 32 registers beside the codes.
template <int Q>
void fastscan_bytes_neon(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                         const std::uint8_t* const* tables, std::size_t query0, std::uint16_t* thresholds,
                         FastScanEmit emit, void* context) {
    const std::size_t groups = m4 / 4;
    const uint8x16_t nibble_u8x16 = vdupq_n_u8(0x0F);
    for (std::size_t b = 0; b < nblocks; ++b) {
        const std::uint8_t* block = blocks + b * groups * 64;
        uint16x8_t all_u16x8[Q][2], high_u16x8[Q][2];
        for (int qi = 0; qi < Q; ++qi)
            for (int h = 0; h < 2; ++h) {
                all_u16x8[qi][h] = vdupq_n_u16(0);
                high_u16x8[qi][h] = vdupq_n_u16(0);
            }
        for (std::size_t g = 0; g < groups; ++g) {
            for (int h = 0; h < 2; ++h) {
                const uint8x16_t codes0 = vld1q_u8(block + g * 64 + h * 16);
                const uint8x16_t codes1 = vld1q_u8(block + g * 64 + 32 + h * 16);
                const uint8x16_t low0 = vandq_u8(codes0, nibble_u8x16), low1 = vandq_u8(codes1, nibble_u8x16);
                const uint8x16_t high0 = vshrq_n_u8(codes0, 4), high1 = vshrq_n_u8(codes1, 4);
                for (int qi = 0; qi < Q; ++qi) {
                    const std::uint8_t* table = tables[qi] + g * 64;  // compact tables
                    const uint8x16_t s =
                        vaddq_u8(vaddq_u8(vqtbl1q_u8(vld1q_u8(table), low0), vqtbl1q_u8(vld1q_u8(table + 16), low1)),
                                 vaddq_u8(vqtbl1q_u8(vld1q_u8(table + 32), high0),
                                          vqtbl1q_u8(vld1q_u8(table + 48), high1)));
                    const uint16x8_t wide = vreinterpretq_u16_u8(s);
                    all_u16x8[qi][h] = vaddq_u16(all_u16x8[qi][h], wide);
                    high_u16x8[qi][h] = vaddq_u16(high_u16x8[qi][h], vshrq_n_u16(wide, 8));
                }
            }
        }
        for (int qi = 0; qi < Q; ++qi)
            emit_block(all_u16x8[qi], high_u16x8[qi], query0 + qi, b, thresholds, emit, context);
    }
}

void fastscan_tables_neon(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                          const std::uint8_t* const* tables, std::size_t nq, std::uint16_t* thresholds,
                          FastScanEmit emit, void* context) {
    std::size_t q = 0;
    for (; q + 4 <= nq; q += 4) fastscan_bytes_neon<4>(blocks, nblocks, m4, tables + q, q, thresholds, emit, context);
    switch (nq - q) {
        case 3: fastscan_bytes_neon<3>(blocks, nblocks, m4, tables + q, q, thresholds, emit, context); break;
        case 2: fastscan_bytes_neon<2>(blocks, nblocks, m4, tables + q, q, thresholds, emit, context); break;
        case 1: fastscan_bytes_neon<1>(blocks, nblocks, m4, tables + q, q, thresholds, emit, context); break;
        default: break;
    }
}

void fastscan_u4_neon(const std::uint8_t* blocks, std::size_t nblocks, std::size_t m4,
                      const std::uint8_t* luts, std::size_t nq, std::uint16_t* thresholds,
                      FastScanEmit emit, void* context) {
    const std::uint8_t* tables[2];
    for (std::size_t q = 0; q < nq; q += 2) {
        const std::size_t n = nq - q >= 2 ? 2 : 1;
        for (std::size_t j = 0; j < n; ++j) tables[j] = luts + (q + j) * m4 * 32;
        if (n == 2)
            fastscan_queries_neon<2>(blocks, nblocks, m4, tables, q, thresholds, emit, context);
        else
            fastscan_queries_neon<1>(blocks, nblocks, m4, tables, q, thresholds, emit, context);
    }
}

}  // namespace

void register_pq_neon(KernelTable& table) {
    // adc_u8 and nearest_f32 stay the scalar kernels: NEON is the aarch64 baseline, so the
    // scalar file already compiles them (auto-vectorised) with the same flags as this one.
    table.pq.fastscan_u4 = fastscan_u4_neon;
    table.pq.fastscan_tables_u4 = fastscan_tables_neon;
    table.pq.fastscan1_u4 = fastscan1_u4_neon;
}

}  // namespace simdex
