// Hamming distance on packed bit codes, portable: 64-bit words with popcount
// (x86-64-v2 has POPCNT; elsewhere the builtin lowers to a bit-twiddling sequence).
#include <cstring>

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

std::uint32_t hamming(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) {
    std::uint32_t count = 0;
    std::size_t j = 0;
    for (; j + 8 <= nbytes; j += 8) {
        std::uint64_t wa, wb;
        std::memcpy(&wa, a + j, 8);
        std::memcpy(&wb, b + j, 8);
        count += static_cast<std::uint32_t>(__builtin_popcountll(wa ^ wb));
    }
    for (; j < nbytes; ++j) count += static_cast<std::uint32_t>(__builtin_popcount(a[j] ^ b[j]));
    return count;
}

#include "kernels/hamming/tile_pairs.inc"

}  // namespace

void register_hamming_scalar(KernelTable& t) {
    t.hamming = hamming;
    t.hamming_tile = hamming_tile_pairs;
}

}  // namespace simdex
