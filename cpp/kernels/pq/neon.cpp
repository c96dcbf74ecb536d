// Kernel family 'pq', neon.
#include "kernels/kernels.hpp"

namespace simdex {

void register_pq_neon(KernelTable&) {}

}  // namespace simdex
