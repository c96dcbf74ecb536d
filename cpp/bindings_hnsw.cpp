// Bindings for the hnsw module (filled in by its issue).
#include "bindings_common.hpp"

namespace simdex {

void bind_hnsw(py::module_&) {}

}  // namespace simdex
