// Bindings for the binary module: the bit-plane kernels (for tests) and BinaryIndex's core.
// Python validates; these re-check sizes.
#include <cstring>
#include <string>
#include <vector>

#include "bindings_binary.hpp"
#include "bindings_hnsw.hpp"
#include "bindings_pipeline.hpp"
#include "index/exact.hpp"

namespace simdex {
namespace {


FloatArray planes_xor(const py::array& query, std::size_t bits_q, const py::array& rows, std::size_t n,
                      std::size_t bits_x, std::size_t plane_bytes, const py::array& weights,
                      float offset) {
    check_planes(bits_q, bits_x, plane_bytes);
    const std::uint8_t* q = array_bytes(query, bits_q * plane_bytes, 1, "query");
    const std::uint8_t* r = array_bytes(rows, n * bits_x * plane_bytes, 1, "rows");
    const float* w = typed<float>(weights, bits_q * bits_x, "weights");
    FloatArray out(n);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().binary.planes_xor_rows(q, bits_q, r, n, bits_x, plane_bytes, w, offset, dst);
    }
    return out;
}

FloatArray planes_float(const py::array& q_bits, const py::array& rows, std::size_t n, std::size_t bits,
                        std::size_t plane_bytes, const py::array& weights, float offset) {
    check_planes(1, bits, plane_bytes);
    const float* q = typed<float>(q_bits, 8 * plane_bytes, "q_bits");
    const std::uint8_t* r = array_bytes(rows, n * bits * plane_bytes, 1, "rows");
    const float* w = typed<float>(weights, bits, "weights");
    FloatArray out(n);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().binary.planes_float_rows(q, r, n, bits, plane_bytes, w, offset, dst);
    }
    return out;
}

// simdex._core.BinaryCore: the state of one BinaryIndex as one C++ object: the codes by slot
// (bits planes of plane_bytes each), the id table (freed slots reused), the re-rank rows
// (optional) and the HNSW graph over the codes (graph=True; its ids are the slots). Add,
// remove and search are one call each. Python (binary.py) checks arguments, fits the
// binarizer, encodes rows and prepares the query blocks; the owning index's reader-writer
// lock orders writes against searches, and each part locks itself as well.
class BinaryCore {
   public:
    BinaryCore(std::size_t dim, std::size_t bits, const py::object& ids, const py::object& rows,
               const py::object& graph)
        : ids_obj_(ids), rows_obj_(rows), graph_obj_(graph), level_(active_level()), dim_(dim), bits_(bits) {
        check_planes(1, bits, (dim + 7) / 8);
        plane_bytes_ = (dim + 7) / 8;
        code_size_ = bits * plane_bytes_;
        ids_ = &ids.cast<IdTable&>();
        if (!rows.is_none()) {
            rows_ = rows.cast<RerankRows*>();
            if (rows_->spec().dim != dim) throw std::invalid_argument("BinaryCore: re-rank rows of another dimension");
        }
        if (!graph.is_none()) {
            graph_ = hnsw_parts(graph);
            const StoreSpec& g = graph_.graph->spec();
            if (g.storage != Storage::bits || g.row_bytes != code_size_)
                throw std::invalid_argument("BinaryCore: the graph must hold the codes");
        }
    }

    // codes: (n, code_size) of x (n, dim) float32 as indexed; ids (n,) or None. All or
    // nothing: an error or an interrupt leaves the index as before.
    IdArray add(const py::array& codes, const py::array& x, const py::object& ids, long threads) {
        const std::size_t n = codes.ndim() ? static_cast<std::size_t>(codes.shape(0)) : 0;
        const std::uint8_t* c = array_bytes(codes, n * code_size_, 1, "codes");
        const float* xp = typed<float>(x, n * dim_, "x");
        const std::int64_t* given = ids.is_none() ? nullptr : typed<std::int64_t>(ids.cast<py::array>(), n, "ids");
        IdArray out(n);
        std::int64_t* out_ids = out.mutable_data();
        py::gil_scoped_release release;
        std::vector<std::int64_t> slots(n);
        const std::int64_t next_before = ids_->next_id();
        ids_->bind(given, out_ids, slots.data(), n, true);  // freed slots first
        try {
            const std::size_t need = ids_->slot_count() * code_size_;
            if (codes_.size() < need) codes_.resize(need);  // amortised growth (vector)
            for (std::size_t i = 0; i < n; ++i)
                std::memcpy(codes_.data() + static_cast<std::size_t>(slots[i]) * code_size_, c + i * code_size_,
                            code_size_);
            if (rows_) rows_->put(slots.data(), xp, n);
        } catch (...) {
            ids_->undo_add(out_ids, n, true, next_before);
            throw;
        }
        if (graph_.graph)  // interrupted or failed: undone whole
            hnsw_insert_or_undo(graph_, c, slots.data(), n, resolve_threads(threads), *ids_, out_ids, true);
        return out;
    }

    std::size_t remove(const py::array& ids, long threads) {
        const std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        std::vector<std::int64_t> slots = ids_->unbind(id_ptr, n, true);
        if (graph_.graph) hnsw_remove(graph_, slots.data(), slots.size(), resolve_threads(threads));
        return slots.size();
    }

    // Score every code (scan; mask: live slots allowed, or None) or walk the graph (filter:
    // allowed slots) for `candidates` (graph: a window of ef, `found` walked and re-scored
    // with the bit planes unless hamming_alpha > 0), re-rank against the rows when the index
    // has them, map slots to ids. queries / bits_q / weights / offsets: the bit-plane query
    // block (make_queries); codes_q: the queries' codes for the graph walk; queries_full:
    // (nq, dim) float32 for the re-rank. hamming_alpha > 0: one symmetric plane, scanned by
    // Hamming distance and scored 1 - alpha^2 (dim - 2 h).
    py::tuple search(const std::string& scoring, const py::array& queries, std::size_t nq, std::size_t bits_q,
                     const py::array& weights, const py::array& offsets, float hamming_alpha, std::size_t k,
                     std::size_t candidates, std::size_t ef, const py::object& mask, const py::object& filter_ids,
                     const py::object& filter_offsets, const py::object& filter_mask, const py::object& codes_q,
                     const py::array& queries_full, long threads) {
        check_k(k);
        PlaneQueries pq = make_queries(scoring, queries, nq, bits_q, bits_, plane_bytes_, weights, offsets);
        const float* qf = typed<float>(queries_full, nq * dim_, "queries_full");
        const std::size_t n = ids_->slot_count();
        if (codes_.size() < n * code_size_) throw std::invalid_argument("BinaryCore: codes missing for some slots");
        const std::uint8_t* mask_ptr = graph_.graph ? nullptr : optional_mask(mask, n);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        const std::uint8_t* cq = nullptr;
        if (graph_.graph) cq = array_bytes(codes_q.cast<py::array>(), nq * code_size_, 1, "codes_q");
        candidates = rows_ ? std::max(candidates, k) : k;
        const std::size_t found = hamming_alpha > 0 ? candidates : std::max(ef, candidates);
        const std::size_t thread_n = resolve_threads(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            const KernelTable& kernels = kernels_for(level_);
            const std::uint8_t* r = codes_.data();
            std::vector<float> cand_d(nq * candidates);
            std::vector<std::int64_t> cand(nq * candidates);
            if (graph_.graph) {
                std::vector<float> walk_d(nq * found);
                std::vector<std::int64_t> walk(nq * found);
                {
                    std::shared_lock<RwLock> lock(*graph_.lock);
                    graph_.graph->search(cq, nq, found, std::max(ef, found), filter, false, thread_n, walk_d.data(),
                                         walk.data());
                }
                if (hamming_alpha > 0) {
                    hamming_to_scores(walk_d.data(), walk_d.size(), hamming_alpha, dim_);
                    cand_d.swap(walk_d);
                    cand.swap(walk);
                } else {
                    planes_rescore(kernels, r, n, bits_, plane_bytes_, pq, nq, walk.data(), found, candidates,
                                   thread_n, cand_d.data(), cand.data());
                }
            } else if (hamming_alpha > 0) {
                StoreSpec spec = make_spec("bits", "hamming", plane_bytes_ * 8, py::none(), py::none());
                exact_search(kernels, spec, r, n, pq.data, nq, candidates, mask_ptr, thread_n, cand_d.data(),
                             cand.data());
                hamming_to_scores(cand_d.data(), cand_d.size(), hamming_alpha, dim_);
            } else {
                planes_search(kernels, r, n, bits_, plane_bytes_, pq, nq, candidates, mask_ptr, thread_n,
                              cand_d.data(), cand.data());
            }
            finish_candidates(rows_, qf, nq, cand_d.data(), cand.data(), candidates, k, thread_n, *ids_, d_ptr,
                              i_ptr);
        });
    }

    // The codes of every slot (slot_count, code_size), for saving.
    py::array_t<std::uint8_t> codes() {
        const std::size_t n = ids_->slot_count();
        py::array_t<std::uint8_t> out({n, code_size_});
        if (n) std::memcpy(out.mutable_data(), codes_.data(), n * code_size_);
        return out;
    }
    // Codes of a loaded index (slot_count, code_size), before any add.
    void restore(const py::array& codes) {
        const std::size_t n = codes.ndim() ? static_cast<std::size_t>(codes.shape(0)) : 0;
        if (n != ids_->slot_count())
            throw std::invalid_argument("binary file: " + std::to_string(n) + " codes for " +
                                        std::to_string(ids_->slot_count()) + " slots");
        const std::uint8_t* c = array_bytes(codes, n * code_size_, 1, "codes");
        codes_.assign(c, c + n * code_size_);
    }
    std::size_t nbytes() const { return codes_.capacity(); }

   private:
    py::object ids_obj_, rows_obj_, graph_obj_;  // keep the parts alive
    IdTable* ids_ = nullptr;
    RerankRows* rows_ = nullptr;
    HnswParts graph_{nullptr, nullptr};
    SimdLevel level_;
    std::size_t dim_, bits_, plane_bytes_ = 0, code_size_ = 0;
    std::vector<std::uint8_t> codes_;
};

}  // namespace

void bind_binary(py::module_& m) {
    m.def("binary_planes_xor", &planes_xor, py::arg("query"), py::arg("bits_q"), py::arg("rows"),
          py::arg("n"), py::arg("bits_x"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    m.def("binary_planes_float", &planes_float, py::arg("q_bits"), py::arg("rows"), py::arg("n"),
          py::arg("bits"), py::arg("plane_bytes"), py::arg("weights"), py::arg("offset"));
    py::class_<BinaryCore>(m, "BinaryCore")
        .def(py::init<std::size_t, std::size_t, const py::object&, const py::object&, const py::object&>(),
             py::arg("dim"), py::arg("bits"), py::arg("ids"), py::arg("rows"), py::arg("graph"))
        .def("add", [](BinaryCore& c, const py::array& codes, const py::array& x, const py::object& ids,
                       const py::object& threads) { return c.add(codes, x, ids, threads_arg(threads)); },
             py::arg("codes"), py::arg("x"), py::arg("ids"), py::arg("threads"))
        .def("remove", [](BinaryCore& c, const py::array& ids, const py::object& threads) {
                 return c.remove(ids, threads_arg(threads)); },
             py::arg("ids"), py::arg("threads") = py::none())
        .def("search",
             [](BinaryCore& c, const std::string& scoring, const py::array& queries, std::size_t nq, std::size_t bits_q,
                const py::array& weights, const py::array& offsets, float hamming_alpha, std::size_t k,
                std::size_t candidates, std::size_t ef, const py::object& mask, const py::object& filter_ids,
                const py::object& filter_offsets, const py::object& filter_mask, const py::object& codes_q,
                const py::array& queries_full, const py::object& threads) {
                 return c.search(scoring, queries, nq, bits_q, weights, offsets, hamming_alpha, k, candidates, ef,
                                 mask, filter_ids, filter_offsets, filter_mask, codes_q, queries_full,
                                 threads_arg(threads));
             },
             py::arg("scoring"), py::arg("queries"), py::arg("nq"), py::arg("bits_q"), py::arg("weights"),
             py::arg("offsets"), py::arg("hamming_alpha"), py::arg("k"), py::arg("candidates"), py::arg("ef"),
             py::arg("mask"), py::arg("filter_ids"), py::arg("filter_offsets"), py::arg("filter_mask"),
             py::arg("codes_q"), py::arg("queries_full"), py::arg("threads"))
        .def("codes", &BinaryCore::codes)
        .def("restore", &BinaryCore::restore, py::arg("codes"))
        .def_property_readonly("nbytes", &BinaryCore::nbytes);
}

}  // namespace simdex
