// Exact top-k over multi-bit binary codes (bit planes, see kernels/binary/binary.hpp):
// a threaded scan through the table's planes_xor_rows / planes_float_rows kernels with the
// top-k fused in. Single-plane symmetric codes go through exact_search (hamming) instead.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.hpp"

namespace simdex {

enum class PlaneScoring : int { symmetric = 0, asymmetric = 1 };

struct PlaneQueries {
    PlaneScoring scoring = PlaneScoring::symmetric;
    // symmetric:  codes (nq, bits_q, plane_bytes) uint8, weights (bits_q, bits_x) float32
    // asymmetric: floats (nq, 8 * plane_bytes) float32 in bit order, weights (bits_x,) float32
    const void* data = nullptr;
    std::size_t bits_q = 0;
    const float* weights = nullptr;
    const float* offsets = nullptr;  // (nq,) float32: the constant term of each query's score
};

// rows: (n, bits_x, plane_bytes) uint8;  mask: (n,) uint8, nonzero = allowed, or nullptr
// out:  distances (nq, k) float32 ascending (smallest score first), slots (nq, k) int64,
//       padded (+inf, -1)
void planes_search(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                   std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                   std::size_t nq, std::size_t k, const std::uint8_t* mask, std::size_t threads,
                   float* out_distances, std::int64_t* out_slots);

// Scores of given slots (candidates (nq, c) int64, -1 = none -> +inf): out (nq, c) float32
void planes_score_slots(const KernelTable& table, const std::uint8_t* rows, std::size_t n,
                        std::size_t bits_x, std::size_t plane_bytes, const PlaneQueries& queries,
                        std::size_t nq, const std::int64_t* candidates, std::size_t c,
                        std::size_t threads, float* out);

// Single-plane symmetric codes scored by Hamming distance h (a scan or a graph over codes):
// the score is 1 - alpha^2 (dim - 2 h), in place; +inf stays +inf.
void hamming_to_scores(float* values, std::size_t count, float alpha, std::size_t dim);

// Re-score candidate slots (nq, c) (-1 = none) with the bit-plane score and keep the `keep`
// best per query, ties by candidate order: out (nq, keep) scores and slots (+inf, -1 padded).
void planes_rescore(const KernelTable& table, const std::uint8_t* rows, std::size_t n, std::size_t bits_x,
                    std::size_t plane_bytes, const PlaneQueries& queries, std::size_t nq,
                    const std::int64_t* candidates, std::size_t c, std::size_t keep, std::size_t threads,
                    float* out_scores, std::int64_t* out_slots);

}  // namespace simdex
