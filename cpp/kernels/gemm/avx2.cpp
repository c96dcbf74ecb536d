// GEMM-style inner products, avx2: inherits the scalar reference until the blocked kernel lands.
#include "kernels/kernels.hpp"

namespace simdex {

void register_gemm_avx2(KernelTable&) {}

}  // namespace simdex
