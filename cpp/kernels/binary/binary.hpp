// Kernel family 'binary': multi-bit residual codes stored as bit planes.
// Function pointers held in KernelTable::binary (see kernels.hpp); one file per ISA beside this.
//
// Codes. A vector x (d,) is approximated by B residual rounds (python/simdex/binary.py):
//     x ~ sum_t alpha_t * s_t,   s_t in {-1, +1}^d,   bit b_tj = 1 where s_tj = +1
// Each round is one bit plane packed like numpy.packbits (big-endian bits within a byte:
// dimension 8g + i is bit 7 - i of byte g; padding bits past d are 0). A stored row is its
// planes one after the other:
//     Layout: row (bits, plane_bytes) uint8, plane t at bytes [t * plane_bytes, (t+1) * plane_bytes)
//
// Symmetric scoring (query encoded the same way, planes q_t):
//     <s_qt, s_xu> = d - 2 * popcount(q_t XOR x_u)        (padding bits are 0 on both sides)
// so any weighted sum of plane dot products is  offset + sum_{t,u} W[t, u] * popcount(q_t ^ x_u).
// The caller folds alphas, d and the metric into (W, offset): the kernel is exact integer
// popcounts followed by a float multiply-add per plane pair (bits_q * bits_x <= 16 terms).
//
// Asymmetric scoring (float query against the planes):
//     <q, s_t> = 2 * sum_{j: b_tj = 1} q_j - sum_j q_j
// the kernel computes  offset + sum_t weight[t] * sum_{j: b_tj = 1} q_j  with the query given
// in *bit order* (so that bit i of byte g picks element 8g + i, the order a little-endian mask
// load sees):  q_bits[8g + i] = q[8g + 7 - i],  zero for 8g + 7 - i >= d,  length 8 * plane_bytes.
// Sums are float32, accumulated in blocks (ISAs agree to ~ d * eps * |q|).
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

struct BinaryKernels {
    // query: (bits_q, plane_bytes) uint8;  rows: (n, bits_x, plane_bytes) uint8
    // weights: (bits_q, bits_x) float32 row-major;  out: (n,) float32
    // out[i] = offset + sum_{t,u} weights[t, u] * popcount(query_t XOR row_i,u)
    void (*planes_xor_rows)(const std::uint8_t* query, std::size_t bits_q, const std::uint8_t* rows,
                            std::size_t n, std::size_t bits_x, std::size_t plane_bytes,
                            const float* weights, float offset, float* out) = nullptr;

    // The symmetric score of many queries against a block of rows (what a batched scan calls):
    // queries: (nq, bits_q, plane_bytes) uint8;  rows: (n, bits_x, plane_bytes) uint8
    // weights: (bits_q, bits_x) float32;  offsets: (nq,) float32;  out: (nq, n) float32 row-major
    // out[i, r] = planes_xor_rows(query i, ..., row r, ..., offsets[i]) (same sums, same order)
    void (*planes_xor_tile)(const std::uint8_t* queries, std::size_t nq, std::size_t bits_q,
                            const std::uint8_t* rows, std::size_t n, std::size_t bits_x,
                            std::size_t plane_bytes, const float* weights, const float* offsets,
                            float* out) = nullptr;

    // q_bits: (8 * plane_bytes,) float32 in bit order (see above);  rows: (n, bits, plane_bytes)
    // weights: (bits,) float32;  out: (n,) float32
    // out[i] = offset + sum_t weights[t] * sum_{j: bit j of row_i,t set} q_bits[j]
    void (*planes_float_rows)(const float* q_bits, const std::uint8_t* rows, std::size_t n,
                              std::size_t bits, std::size_t plane_bytes, const float* weights,
                              float offset, float* out) = nullptr;
};

}  // namespace simdex
