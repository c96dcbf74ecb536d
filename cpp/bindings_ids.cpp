// Registers simdex._core.IdTable (bindings_ids.hpp).
#include "bindings_ids.hpp"

namespace simdex {

void bind_ids(py::module_& m) {
    py::class_<IdTable>(m, "IdTable")
        .def(py::init<>())
        .def("add", &IdTable::add, py::arg("ids"), py::arg("n"), py::arg("reuse"))
        .def("remove", &IdTable::remove, py::arg("ids"), py::arg("reuse"))
        .def("ids_of", &IdTable::ids_of, py::arg("slots"))
        .def("slots_of", &IdTable::slots_of, py::arg("ids"))
        .def("scan_mask", &IdTable::scan_mask, py::arg("filter_ids") = py::none(),
             py::arg("filter_offsets") = py::none(), py::arg("filter_mask") = py::none())
        .def("__contains__", &IdTable::contains)
        .def("__len__", &IdTable::size)
        .def("ids", &IdTable::ids)
        .def("state", &IdTable::state)
        .def("restore", &IdTable::restore, py::arg("ids"), py::arg("next_id"), py::arg("reuse"))
        .def_property_readonly("slot_count", &IdTable::slot_count)
        .def_property_readonly("nbytes", &IdTable::nbytes);
}

}  // namespace simdex
