// Kernel family 'binary', avx2.
#include "kernels/kernels.hpp"

namespace simdex {

void register_binary_avx2(KernelTable&) {}

}  // namespace simdex
