// Hamming distance on packed bit codes, portable: 64-bit words with popcount
// (x86-64-v2 has POPCNT; elsewhere the builtin lowers to a bit-twiddling sequence).
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/hamming/popcount_scalar.inc"

#include "kernels/hamming/tile_pairs.inc"

}  // namespace

void register_hamming_scalar(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile_pairs;
}

}  // namespace simdex
