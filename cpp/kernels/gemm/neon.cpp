// GEMM-style inner products, NEON: inherits the scalar reference until the blocked kernel lands.
#include "kernels/kernels.hpp"

namespace simdex {

void register_gemm_neon(KernelTable&) {}

}  // namespace simdex
