// Bindings for the pq module (filled in by its issue).
#include "bindings_common.hpp"

namespace simdex {

void bind_pq(py::module_&) {}

}  // namespace simdex
