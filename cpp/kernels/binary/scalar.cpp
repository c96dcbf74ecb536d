// Kernel family 'binary', scalar (portable C++; see binary.hpp for the math and layouts).
// Popcounts on 64-bit words (x86-64-v2 has POPCNT; elsewhere the builtin lowers to a
// bit-twiddling sequence), bytes for the tail.
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/hamming/popcount_scalar.inc"

#include "kernels/binary/planes_xor_rows.inc"

// sum of q_bits[8g + i] over the set bits i of each byte g of one plane; one partial sum per
// bit position (independent chains the compiler can keep in one vector register)
float masked_sum(const float* q_bits, const std::uint8_t* plane, std::size_t plane_bytes) {
    float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::size_t g = 0; g < plane_bytes; ++g) {
        unsigned byte = plane[g];
        const float* q = q_bits + 8 * g;
        for (unsigned i = 0; i < 8; ++i) {
            // branch-free select: random bits would mispredict half the time
            std::uint32_t keep = 0u - ((byte >> i) & 1u), value;
            std::memcpy(&value, q + i, 4);
            value &= keep;
            float selected;
            std::memcpy(&selected, &value, 4);
            partial[i] += selected;
        }
    }
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
           ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

void planes_float_rows(const float* q_bits, const std::uint8_t* rows, std::size_t n,
                       std::size_t bits, std::size_t plane_bytes, const float* weights,
                       float offset, float* out) {
    std::size_t row_bytes = bits * plane_bytes;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* row = rows + i * row_bytes;
        float score = offset;
        for (std::size_t t = 0; t < bits; ++t)
            score += weights[t] * masked_sum(q_bits, row + t * plane_bytes, plane_bytes);
        out[i] = score;
    }
}

}  // namespace

void register_binary_scalar(KernelTable& t) {
    t.binary.planes_xor_rows = planes_xor_rows;
    t.binary.planes_xor_tile = planes_xor_tile_by_rows;
    t.binary.planes_float_rows = planes_float_rows;
}

}  // namespace simdex
