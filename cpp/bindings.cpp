// The pybind11 module simdex._core: one module, split by concept into bindings_*.cpp.
#include <Python.h>

#include <system_error>

#include "bindings_common.hpp"

namespace py = pybind11;
namespace simdex { void bind_multivector(py::module_& m); }  // bindings_multivector.cpp

PYBIND11_MODULE(_core, m) {
    m.doc() = "simdex C++ core: SIMD kernels, exact search, HNSW, PQ and binary scans";
    // Ctrl-C: the thread that runs a long loop re-acquires the GIL every ~20 ms to ask.
    simdex::set_interrupt_check([] {
        py::gil_scoped_acquire gil;
        return PyErr_CheckSignals() != 0;
    });
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const simdex::Interrupted&) {
            if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        } catch (const std::system_error& e) {  // files (re-rank rows): OSError with its errno
            py::object err = py::reinterpret_borrow<py::object>(PyExc_OSError)(e.code().value(), e.what());
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
        }
    });
#ifdef SIMDEX_VERSION_INFO
    m.attr("__version__") = SIMDEX_VERSION_INFO;
#endif
    simdex::bind_kernels(m);
    simdex::bind_hnsw(m);
    simdex::bind_flat(m);
    simdex::bind_ids(m);
    simdex::bind_rerank(m);
    simdex::bind_leanvec(m);
    simdex::bind_pq(m);
    simdex::bind_pqcore(m);
    simdex::bind_binary(m);
    simdex::bind_multivector(m);
}
