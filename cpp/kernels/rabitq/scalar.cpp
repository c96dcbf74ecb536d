// Kernel family 'rabitq', tier scalar: the reference (see reference.inc).

#include "kernels/kernels.hpp"

namespace simdex {
namespace {

#include "kernels/rabitq/reference.inc"

}  // namespace

void register_rabitq_scalar(KernelTable& table) { table.rabitq_tables = rabitq_tables_reference; }

}  // namespace simdex
