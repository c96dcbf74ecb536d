// Kernel family 'pq': function pointers held in KernelTable::pq (see kernels.hpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

struct PqKernels {
};

}  // namespace simdex
