// simdex._core.LeanVecCore: one LeanVecIndex as one C++ object. It holds the fitted
// projections, the id table (user ids -> store rows), the re-rank rows (RerankRows) and the
// HNSW graph over the reduced rows (its ids are the store rows), and runs every operation
// in one call: add = project, check, encode, bind ids, store the full rows, insert into the
// graph; search = project, walk, re-rank, ids; remove = forget ids, tombstone the nodes.
// Python (leanvec.py) checks arguments, fits the projection and keeps the parameters.
//
// Locking: the owning Python index serialises writes against searches (its reader-writer
// lock); each part locks itself as well (the graph its handle lock, the id table its mutex,
// the rows their lock), always after the GIL is released.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "bindings_common.hpp"
#include "bindings_hnsw.hpp"
#include "bindings_ids.hpp"
#include "bindings_pipeline.hpp"
#include "index/exact.hpp"
#include "index/rerank.hpp"

namespace simdex {
namespace {

// x (n, dim) -> (n, out_dim) = x @ matrix (rows: (out_dim, dim), row j = output j), through the
// GEMM kernels and the thread pool; refuses results whose distances would overflow float32 (a
// projection that does not fit these vectors). The one projection of LeanVec and LeanVecCore.
std::vector<float> project_checked(const KernelTable& kernels, const float* rows, std::size_t out_dim, std::size_t dim,
                                   const float* x, std::size_t n, float limit, std::size_t threads) {
    std::vector<float> out(n * out_dim);
    inner_products(kernels, rows, out_dim, x, n, dim, threads, out.data());
    float top = 0.0f;
    for (float v : out) top = std::isfinite(v) ? std::max(top, std::fabs(v)) : std::numeric_limits<float>::infinity();
    if (top > limit)
        throw std::invalid_argument("projected vectors reach magnitude " + std::to_string(top) + ", above the " +
                                    std::to_string(limit) + " that " + std::to_string(out_dim) +
                                    "-d float32 distances allow: the projection matrices do not fit "
                                    "these vectors (a corrupted or crafted file?)");
    return out;
}

class LeanVecCore {
   public:
    // graph: simdex._core.HnswGraph over out_dim rows; ids: simdex._core.IdTable; rows:
    // simdex._core.RerankRows (dim); query_rows / data_rows: (out_dim, dim) float32, row j =
    // output j; limit: the largest |component| a projected row may have (distances stay finite).
    LeanVecCore(const py::object& graph, const py::object& ids, std::shared_ptr<RerankRows> rows,
                const py::array& query_rows, const py::array& data_rows, float limit)
        : graph_obj_(graph), ids_obj_(ids), rows_(std::move(rows)), level_(active_level()), limit_(limit) {
        graph_ = hnsw_parts(graph);
        ids_ = &ids.cast<IdTable&>();
        dim_ = rows_->spec().dim;
        out_dim_ = graph_.graph->spec().dim;
        if (graph_.graph->spec().storage == Storage::bits) throw std::invalid_argument("LeanVecCore: a dense graph");
        const std::size_t size = out_dim_ * dim_;
        const float* q = typed<float>(query_rows, size, "query_rows");
        const float* d = typed<float>(data_rows, size, "data_rows");
        query_rows_.assign(q, q + size);
        data_rows_.assign(d, d + size);
    }

    // x: (n, dim) float32 as indexed (unit length for cosine); ids (n,) new unique ids or
    // None (sequential). All or nothing: an error or an interrupt leaves the index as before.
    IdArray add(const py::array& x, const py::object& ids, long threads) {
        const std::size_t n = x.ndim() ? static_cast<std::size_t>(x.shape(0)) : 0;
        const float* xp = typed<float>(x, n * dim_, "x");
        IdArray out(n);
        const std::int64_t* given = nullptr;
        py::object keep;
        if (!ids.is_none()) {
            keep = ids;
            given = typed<std::int64_t>(ids.cast<py::array>(), n, "ids");
        }
        std::int64_t* out_ids = out.mutable_data();
        py::gil_scoped_release release;
        const std::size_t thread_n = resolve_threads(threads);
        const StoreSpec& spec = graph_.graph->spec();
        std::vector<float> reduced = project(data_rows_, xp, n, thread_n);
        std::vector<std::uint8_t> encoded(n * spec.row_bytes);
        encode_rows(spec, reduced.data(), n, encoded.data());
        std::vector<std::int64_t> slots(n);
        const std::int64_t next_before = ids_->next_id();
        ids_->bind(given, out_ids, slots.data(), n, false);  // appended slots: store rows
        try {
            rows_->put(slots.data(), xp, n);
        } catch (...) {
            ids_->undo_add(out_ids, n, false, next_before);
            throw;
        }
        // interrupted or failed: undone whole; the stored rows stay behind dead slots, so
        // store rows and slots stay aligned
        hnsw_insert_or_undo(graph_, encoded.data(), slots.data(), n, thread_n, *ids_, out_ids, false);
        return out;
    }

    // Forgets ids (unknown ones ignored); returns how many were removed. O(1) per id.
    std::size_t remove(const py::array& ids, long threads) {
        const std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        std::vector<std::int64_t> slots = ids_->unbind(id_ptr, n, false);
        hnsw_remove(graph_, slots.data(), slots.size(), resolve_threads(threads));
        return slots.size();
    }

    // queries: (nq, dim) float32 as indexed; the graph returns `candidates` (>= k) per query
    // with a window of max(ef, candidates); all are re-scored against the full rows.
    py::tuple search(const py::array& queries, std::size_t k, std::size_t ef, std::size_t candidates,
                     const py::object& filter_ids, const py::object& filter_offsets, const py::object& filter_mask,
                     long threads) {
        check_k(k);
        const std::size_t nq = queries.ndim() ? static_cast<std::size_t>(queries.shape(0)) : 0;
        const float* q = typed<float>(queries, nq * dim_, "queries");
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        candidates = std::max(candidates, k);
        const std::size_t thread_n = resolve_threads(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::vector<float> reduced = project(query_rows_, q, nq, thread_n), cand_d(nq * candidates);
            std::vector<std::int64_t> cand(nq * candidates);
            {
                std::shared_lock<RwLock> lock(*graph_.lock);
                graph_.graph->search(reduced.data(), nq, candidates, std::max(ef, candidates), filter, false,
                                     thread_n, cand_d.data(), cand.data());
            }
            finish_candidates(rows_.get(), q, nq, cand_d.data(), cand.data(), candidates, k, thread_n, *ids_, d_ptr,
                              i_ptr);
        });
    }

    std::size_t nbytes() const { return (query_rows_.size() + data_rows_.size()) * sizeof(float); }

   private:
    std::vector<float> project(const std::vector<float>& rows, const float* x, std::size_t n,
                               std::size_t threads) const {
        return project_checked(kernels_for(level_), rows.data(), out_dim_, dim_, x, n, limit_, threads);
    }

    py::object graph_obj_, ids_obj_;  // keep the parts alive
    HnswParts graph_;
    IdTable* ids_;
    std::shared_ptr<RerankRows> rows_;
    SimdLevel level_;
    float limit_;
    std::size_t dim_ = 0, out_dim_ = 0;
    std::vector<float> query_rows_, data_rows_;
};

}  // namespace

void bind_leanvec(py::module_& m) {
    m.def(
        "leanvec_project",
        [](const py::array& rows, const py::array& x, float limit, const py::object& threads) {
            if (rows.ndim() != 2 || x.ndim() != 2 || rows.shape(1) != x.shape(1))
                throw std::invalid_argument("leanvec_project: rows (out_dim, dim) and x (n, dim) float32");
            const auto out_dim = static_cast<std::size_t>(rows.shape(0)), dim = static_cast<std::size_t>(rows.shape(1)),
                       n = static_cast<std::size_t>(x.shape(0));
            const float* r = typed<float>(rows, out_dim * dim, "rows");
            const float* xp = typed<float>(x, n * dim, "x");
            const std::size_t thread_n = thread_count(threads);
            std::vector<float> out;
            {
                py::gil_scoped_release release;
                out = project_checked(active_kernels(), r, out_dim, dim, xp, n, limit, thread_n);
            }
            FloatArray result({n, out_dim});
            std::copy(out.begin(), out.end(), result.mutable_data());
            return result;
        },
        py::arg("rows"), py::arg("x"), py::arg("limit"), py::arg("threads") = py::none());
    py::class_<LeanVecCore>(m, "LeanVecCore")
        .def(py::init<const py::object&, const py::object&, std::shared_ptr<RerankRows>, const py::array&,
                      const py::array&, float>(),
             py::arg("graph"), py::arg("ids"), py::arg("rows"), py::arg("query_rows"), py::arg("data_rows"),
             py::arg("limit"))
        .def("add", [](LeanVecCore& c, const py::array& x, const py::object& ids,
                       const py::object& threads) { return c.add(x, ids, threads_arg(threads)); },
             py::arg("x"), py::arg("ids"), py::arg("threads"))
        .def("remove", [](LeanVecCore& c, const py::array& ids, const py::object& threads) {
                 return c.remove(ids, threads_arg(threads)); },
             py::arg("ids"), py::arg("threads") = py::none())
        .def("search", [](LeanVecCore& c, const py::array& queries, std::size_t k, std::size_t ef,
                          std::size_t candidates, const py::object& filter_ids, const py::object& filter_offsets,
                          const py::object& filter_mask, const py::object& threads) {
                 return c.search(queries, k, ef, candidates, filter_ids, filter_offsets, filter_mask,
                                 threads_arg(threads)); },
             py::arg("queries"), py::arg("k"), py::arg("ef"), py::arg("candidates"), py::arg("filter_ids"),
             py::arg("filter_offsets"), py::arg("filter_mask"), py::arg("threads"))
        .def_property_readonly("nbytes", &LeanVecCore::nbytes);
}

}  // namespace simdex
