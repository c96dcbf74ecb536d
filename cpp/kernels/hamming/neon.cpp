// Hamming distance, aarch64 NEON: 16-byte XOR, vcnt per byte, pairwise widening adds.
#include <arm_neon.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

std::uint32_t hamming(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) {
    uint32x4_t sum = vdupq_n_u32(0);
    std::size_t j = 0;
    for (; j + 16 <= nbytes; j += 16) {
        uint8x16_t counts = vcntq_u8(veorq_u8(vld1q_u8(a + j), vld1q_u8(b + j)));
        sum = vpadalq_u16(sum, vpaddlq_u8(counts));
    }
    std::uint32_t count = vaddvq_u32(sum);
    for (; j < nbytes; ++j) count += static_cast<std::uint32_t>(__builtin_popcount(a[j] ^ b[j]));
    return count;
}

#include "kernels/hamming/tile_pairs.inc"

}  // namespace

void register_hamming_neon(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile_pairs;
}

}  // namespace simdex
