// GEMM-style inner products, avx512: inherits the scalar reference until the blocked kernel lands.
#include "kernels/kernels.hpp"

namespace simdex {

void register_gemm_avx512(KernelTable&) {}

}  // namespace simdex
