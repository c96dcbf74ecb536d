// Bindings for the re-rank rows: simdex._core.RerankRows, used by python/simdex/_rerank.py
// (argument checks, persistence) and taken by the compressed indexes' search pipelines.
// Every method releases the GIL before it waits for the rows' lock.
#include <memory>
#include <string>

#include "bindings_common.hpp"
#include "index/rerank.hpp"

namespace simdex {
namespace {

using Rows = std::shared_ptr<RerankRows>;

py::dtype row_dtype(Storage s) {
    switch (s) {
        case Storage::f32: return py::dtype::of<float>();
        case Storage::f16: return py::dtype("float16");
        default: return py::dtype::of<std::uint8_t>();
    }
}

Rows make_rows(const std::string& storage, const std::string& metric, std::size_t dim, const py::object& lo,
               const py::object& scale, const py::object& path) {
    StoreSpec spec = unranged_spec(storage, metric, dim);
    const float* lo_ptr = lo.is_none() ? nullptr : typed<float>(lo.cast<py::array>(), dim, "lo");
    const float* scale_ptr = scale.is_none() ? nullptr : typed<float>(scale.cast<py::array>(), dim, "scale");
    Rows rows = std::make_shared<RerankRows>(kernels_for(active_level()), spec.storage, spec.metric, dim, lo_ptr,
                                             scale_ptr);
    if (!path.is_none()) {
        std::string p = path.cast<std::string>();
        py::gil_scoped_release release;
        rows->create_file(p);
    }
    return rows;
}

void put(RerankRows& r, const py::array& slots, const py::array& x) {
    const std::size_t n = static_cast<std::size_t>(slots.size());
    const std::int64_t* s = typed<std::int64_t>(slots, n, "slots");
    const float* xp = typed<float>(x, n * r.spec().dim, "rows");
    py::gil_scoped_release release;
    r.put(s, xp, n);
}

void append(RerankRows& r, const py::array& x) {
    const std::size_t d = r.spec().dim, n = static_cast<std::size_t>(x.size()) / d;
    const float* xp = typed<float>(x, n * d, "rows");
    py::gil_scoped_release release;
    r.append(xp, n);
}

FloatArray vectors(RerankRows& r, const py::array& slots) {
    const std::size_t n = static_cast<std::size_t>(slots.size());
    const std::int64_t* s = typed<std::int64_t>(slots, n, "slots");
    FloatArray out({n, r.spec().dim});
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    r.decode(s, n, o);
    return out;
}

py::tuple rescore(RerankRows& r, const py::array& queries, const py::array& candidates, std::size_t k,
                  const py::object& threads) {
    check_k(k);
    const std::size_t d = r.spec().dim, nq = static_cast<std::size_t>(queries.size()) / d;
    const float* q = typed<float>(queries, nq * d, "queries");
    const std::size_t c = nq ? static_cast<std::size_t>(candidates.size()) / nq : 0;
    const std::int64_t* cand = typed<std::int64_t>(candidates, nq * c, "candidates");
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        r.rerank(q, nq, cand, c, k, thread_n, d_ptr, s_ptr);
    });
}

// A copy of the rows, (n, dim) in their storage dtype (saving, pickling).
py::array copy(RerankRows& r) {
    py::gil_scoped_release release;
    std::shared_lock<RwLock> lock(r.lock());  // size and bytes of one moment
    py::gil_scoped_acquire gil;
    const std::size_t n = r.count();
    py::array out(row_dtype(r.spec().storage), {n, r.spec().dim});
    if (n) std::memcpy(out.mutable_data(), r.data(), n * r.spec().row_bytes);
    return out;
}

// A read-only view of the rows (n, dim), valid until the next put: for callers that hold
// the owning index's lock (file checks at load, the multi-vector token re-rank).
py::array view(const py::object& self) {
    RerankRows& r = self.cast<RerankRows&>();
    std::size_t n;
    {
        py::gil_scoped_release release;
        n = r.size();
    }
    if (n == 0) return py::array(row_dtype(r.spec().storage), {std::size_t(0), r.spec().dim});
    py::array out(row_dtype(r.spec().storage), {n, r.spec().dim}, {}, r.data(), self);
    out.attr("setflags")(py::arg("write") = false);
    return out;
}

}  // namespace

void bind_rerank(py::module_& m) {
    py::class_<RerankRows, Rows>(m, "RerankRows")
        .def(py::init(&make_rows), py::arg("storage"), py::arg("metric"), py::arg("dim"),
             py::arg("lo") = py::none(), py::arg("scale") = py::none(), py::arg("path") = py::none())
        .def("open_file",
             [](RerankRows& r, const std::string& path, std::size_t n) {
                 py::gil_scoped_release release;
                 r.open_file(path, n);
             },
             py::arg("path"), py::arg("n"))
        .def("restore",
             [](RerankRows& r, const py::array& rows) {
                 const std::size_t n = rows.ndim() ? static_cast<std::size_t>(rows.shape(0)) : 0;
                 const std::uint8_t* p = array_bytes(rows, n * r.spec().row_bytes, rows.itemsize(), "rows");
                 py::gil_scoped_release release;
                 r.restore(p, n);
             },
             py::arg("rows"))
        .def("put", &put, py::arg("slots"), py::arg("rows"))
        .def("append", &append, py::arg("rows"))
        .def("vectors", &vectors, py::arg("slots"))
        .def("rescore", &rescore, py::arg("queries"), py::arg("candidates"), py::arg("k"),
             py::arg("threads") = py::none())
        .def("copy", &copy)
        .def("view", &view)
        .def("crc32", [](RerankRows& r) { py::gil_scoped_release release; return r.crc32(); })
        .def("__len__", [](RerankRows& r) { py::gil_scoped_release release; return r.size(); })
        .def_property_readonly("nbytes", [](RerankRows& r) { py::gil_scoped_release release; return r.nbytes(); })
        .def_property_readonly("writable", &RerankRows::writable)
        .def_property_readonly("in_file", &RerankRows::in_file);
}

}  // namespace simdex
