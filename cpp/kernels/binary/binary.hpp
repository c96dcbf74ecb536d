// Kernel family 'binary': function pointers held in KernelTable::binary (see kernels.hpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

struct BinaryKernels {
};

}  // namespace simdex
