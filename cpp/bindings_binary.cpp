// Bindings for the binary module (filled in by its issue).
#include "bindings_common.hpp"

namespace simdex {

void bind_binary(py::module_&) {}

}  // namespace simdex
