// Kernel family 'binary', avx512.
#include "kernels/kernels.hpp"

namespace simdex {

void register_binary_avx512(KernelTable&) {}

}  // namespace simdex
