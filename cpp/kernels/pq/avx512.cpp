// Kernel family 'pq', avx512.
#include "kernels/kernels.hpp"

namespace simdex {

void register_pq_avx512(KernelTable&) {}

}  // namespace simdex
