// Kernel family 'fwht', tier scalar: the reference (see reference.inc).
#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/fwht/reference.inc"

}  // namespace

void register_fwht_scalar(KernelTable& table) { table.fwht_f64 = fwht_f64_reference; }

}  // namespace simdex
