// Hamming distance, aarch64 NEON: 16-byte XOR, vcnt per byte, pairwise widening adds.
#include <arm_neon.h>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/hamming/popcount_neon.inc"

#include "kernels/hamming/tile_pairs.inc"

}  // namespace

void register_hamming_neon(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile_pairs;
}

}  // namespace simdex
