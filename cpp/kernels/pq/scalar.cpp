// Kernel family 'pq', scalar.
#include "kernels/kernels.hpp"

namespace simdex {

void register_pq_scalar(KernelTable&) {}

}  // namespace simdex
