// Kernel family 'pq', avx2.
#include "kernels/kernels.hpp"

namespace simdex {

void register_pq_avx2(KernelTable&) {}

}  // namespace simdex
