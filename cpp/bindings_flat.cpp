// Bindings for the FlatIndex core: simdex._core.FlatCore, used by python/simdex/flat.py.
// Python validates every argument; here only cheap re-checks. Searches share a reader lock,
// add / remove / restore take the writer lock, always after the GIL is released.
#include <cstring>
#include <shared_mutex>
#include <string>

#include "bindings_common.hpp"
#include "bindings_multivector.hpp"
#include "index/flat.hpp"

namespace simdex {
namespace {

class FlatHandle {
   public:
    FlatHandle(const std::string& storage, const std::string& metric, std::size_t dim)
        : level_(active_level()) {
        StoreSpec spec = unranged_spec(storage, metric, dim);
        core_.reset(new FlatCore(kernels_for(level_), spec));
    }

    void set_ranges(const py::array& lo, const py::array& scale) {
        auto ranges = range_args(lo, scale, core_->spec().dim);
        py::gil_scoped_release release;  // never wait for the index lock holding the GIL
        std::unique_lock<RwLock> lock(mutex_);
        core_->set_ranges(ranges.first, ranges.second);
    }

    IdArray add(const py::array& rows, const py::object& ids) {
        AddArgs a = add_args(rows, ids, core_->spec().row_bytes);
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->add(a.rows, a.ids, a.assigned, a.n);
        return a.out;
    }

    std::size_t remove(const py::array& ids) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        return core_->remove(id_ptr, n);
    }

    py::tuple search(const py::array& queries, std::size_t nq, std::size_t k,
                     const py::object& filter_ids, const py::object& filter_offsets, const py::object& filter_mask,
                     const py::object& threads) {
        const std::uint8_t* q = array_bytes(queries, nq * query_bytes(core_->spec()), queries.itemsize(), "queries");
        check_k(k);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        std::size_t thread_n = thread_count(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::shared_lock<RwLock> lock(mutex_);
            core_->search(q, nq, k, filter, thread_n, d_ptr, i_ptr);
        });
    }

    // MultiVectorIndex(index="flat").search in one call: encode the query sets, scan the
    // documents' encodings exactly for `candidates` per query (ids = the multi-vector index's
    // slots; filter in those slots), re-rank by exact Chamfer from the token store, slots to
    // ids through `table` (bindings_multivector.hpp).
    py::tuple search_multivector(const FdeEncoder& encoder, const py::array& q_tokens, const py::array& q_offsets,
                                 const py::tuple& store, std::size_t k, std::size_t candidates,
                                 const py::object& carve, const py::object& filter_ids,
                                 const py::object& filter_offsets, const py::object& filter_mask, IdTable& table,
                                 const py::object& threads) {
        if (core_->spec().storage == Storage::bits || core_->spec().dim != encoder.out_dim())
            throw std::invalid_argument("search_multivector: the index must hold the encodings");
        MultiVectorRequest r = multivector_request(encoder, q_tokens, q_offsets, store, k, candidates, carve);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, r.queries.n);
        const std::size_t thread_n = thread_count(threads);
        return run_multivector(kernels_for(level_), r, table, thread_n,
                               [&](const float* fde, std::size_t nq, std::size_t c, float* d, std::int64_t* ids) {
                                   std::shared_lock<RwLock> lock(mutex_);
                                   core_->search(fde, nq, c, filter, thread_n, d, ids);
                               });
    }

    bool contains(std::int64_t id) { return contains_id(core_->idmap(), mutex_, id); }
    IdArray ids() { return live_ids(core_->idmap(), mutex_); }
    py::tuple rows(const py::array& ids) {
        return rows_of_ids(core_->idmap(), core_->spec().row_bytes, mutex_, ids,
                           [&](std::size_t s) { return core_->row(s); });
    }

    // A consistent copy of the state: {"rows": (n, row_bytes) uint8, "ids": (n,), "next_id"}.
    py::dict state() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        py::gil_scoped_acquire gil;
        std::size_t n = core_->idmap().slots(), rb = core_->spec().row_bytes;
        py::array_t<std::uint8_t> rows({n, rb});
        if (n) std::memcpy(rows.mutable_data(), core_->rows(), n * rb);
        IdArray ids(n);
        if (n) std::memcpy(ids.mutable_data(), core_->idmap().ids(), n * 8);
        py::dict out;
        out["rows"] = rows;
        out["ids"] = ids;
        out["next_id"] = core_->idmap().next_id();
        return out;
    }

    void restore(const py::array& rows, const py::array& ids, std::int64_t next_id) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        const std::uint8_t* r = array_bytes(rows, n * core_->spec().row_bytes, rows.itemsize(), "rows");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->restore(r, id_ptr, n, next_id);
    }

    std::size_t size() { return read_locked(mutex_, [&] { return core_->size(); }); }
    std::size_t nbytes() { return read_locked(mutex_, [&] { return core_->nbytes(); }); }
    std::string simd() const { return level_name(level_); }

   private:
    SimdLevel level_;
    std::unique_ptr<FlatCore> core_;
    RwLock mutex_;
};

}  // namespace

void bind_flat(py::module_& m) {
    py::class_<FlatHandle>(m, "FlatCore")
        .def(py::init<const std::string&, const std::string&, std::size_t>(), py::arg("storage"),
             py::arg("metric"), py::arg("dim"))
        .def("set_ranges", &FlatHandle::set_ranges)
        .def("add", &FlatHandle::add, py::arg("rows"), py::arg("ids") = py::none())
        .def("remove", &FlatHandle::remove, py::arg("ids"))
        .def("search", &FlatHandle::search, py::arg("queries"), py::arg("nq"), py::arg("k"),
             py::arg("filter_ids") = py::none(), py::arg("filter_offsets") = py::none(),
             py::arg("filter_mask") = py::none(),
             py::arg("threads") = py::none())
        .def("search_multivector", &FlatHandle::search_multivector, py::arg("encoder"), py::arg("q_tokens"),
             py::arg("q_offsets"), py::arg("store"), py::arg("k"), py::arg("candidates"), py::arg("carve"),
             py::arg("filter_ids"), py::arg("filter_offsets"), py::arg("filter_mask"), py::arg("table"),
             py::arg("threads"))
        .def("__contains__", &FlatHandle::contains)
        .def("ids", &FlatHandle::ids)
        .def("rows", &FlatHandle::rows)
        .def("state", &FlatHandle::state)
        .def("restore", &FlatHandle::restore, py::arg("rows"), py::arg("ids"), py::arg("next_id"))
        .def("__len__", &FlatHandle::size)
        .def_property_readonly("nbytes", &FlatHandle::nbytes)
        .def_property_readonly("simd", &FlatHandle::simd);
}

}  // namespace simdex
