// Kernel family 'binary', scalar.
#include "kernels/kernels.hpp"

namespace simdex {

void register_binary_scalar(KernelTable&) {}

}  // namespace simdex
