// Bindings for the HNSW graph: simdex._core.HnswGraph, used by python/simdex/hnsw.py.
// Python validates every argument; here only cheap re-checks. Searches share a reader lock,
// add / remove / restore take the writer lock, always after the GIL is released.
#include <cmath>
#include <cstring>
#include <shared_mutex>
#include <string>

#include "bindings_common.hpp"
#include "bindings_hnsw.hpp"
#include "bindings_multivector.hpp"
#include "dispatch.hpp"
#include "index/hnsw.hpp"

namespace simdex {

Rotation rotation_arg(const std::string& kind, std::size_t dim, const py::array& params);  // bindings_rabitq.cpp

namespace {


class HnswHandle {
   public:
    // rows: None (rows in the node blocks) or a simdex._core.RerankRows of float32 rows
    // (python/simdex/_rerank.py; a memory-mapped side file) that the graph then owns as their
    // only writer (see HnswGraph's constructor).
    HnswHandle(const std::string& storage, const std::string& metric, std::size_t dim, std::size_t M,
               std::size_t ef_construction, std::uint64_t seed, const py::object& rows)
        : level_(active_level()) {
        StoreSpec spec = unranged_spec(storage, metric, dim);
        std::shared_ptr<RerankRows> external = rows.is_none() ? nullptr : rows.cast<std::shared_ptr<RerankRows>>();
        graph_.reset(new HnswGraph(kernels_for(level_), spec, M, ef_construction, seed, std::move(external)));
    }

    void set_ranges(const py::array& lo, const py::array& scale) {
        auto ranges = range_args(lo, scale, graph_->spec().dim);
        py::gil_scoped_release release;  // never wait for the index lock holding the GIL
        std::unique_lock<RwLock> lock(mutex_);
        graph_->set_ranges(ranges.first, ranges.second);
    }

    // storage "rabitq": the graph walks level 0 on RaBitQ codes (see GraphCodes in hnsw.hpp).
    // params: the rotation (python/simdex/rabitq.py draw_rotation); centre (dim,) or None.
    void enable_codes(int bits, int query_bits, const std::string& rotation, const py::array& params,
                      const py::object& centre) {
        const std::size_t dim = graph_->spec().dim;
        RaBitQ quantizer(dim, bits, query_bits, rotation_arg(rotation, dim, params));
        const float* c = centre.is_none() ? nullptr : typed<float>(centre.cast<py::array>(), dim, "centre");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        graph_->enable_codes(quantizer, c);
    }

    bool int8_queries() const { return graph_->int8_queries(); }
    void set_int8_queries(bool on) {
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        graph_->set_int8_queries(on);
    }

    // rows: (n, row_bytes); ids: (n,) int64 or None (sequential). Returns the ids.
    IdArray add(const py::array& rows, const py::object& ids, const py::object& order, long threads) {
        AddArgs a = add_args(rows, ids, graph_->spec().row_bytes);
        const std::int64_t* order_ptr = nullptr;
        if (!order.is_none()) order_ptr = typed<std::int64_t>(order.cast<py::array>(), a.n, "order");
        py::gil_scoped_release release;
        hnsw_insert(parts(), a.rows, a.ids, a.assigned, order_ptr, a.n, resolve_threads(threads));
        return a.out;
    }

    std::size_t remove(const py::array& ids, long threads) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        return hnsw_remove(parts(), id_ptr, n, resolve_threads(threads));
    }

    std::size_t compact(long threads) {
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        return graph_->compact(resolve_threads(threads));
    }

    // queries: (nq, dim) float32 or (nq, nbytes) codes; filter: see filter_arg.
    py::tuple search(const py::array& queries, std::size_t nq, std::size_t k, std::size_t ef,
                     const py::object& filter_ids, const py::object& filter_offsets, const py::object& filter_mask, bool normalize,
                     long threads, bool buffered, std::size_t code_buffer) {
        const StoreSpec& spec = graph_->spec();
        const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
        check_k(k);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::shared_lock<RwLock> lock(mutex_);
            graph_->search(q, nq, k, ef, filter, normalize, resolve_threads(threads), d_ptr, i_ptr,
                           buffered, code_buffer);
        });
    }

    // MultiVectorIndex(index="hnsw").search in one call: encode the query sets, walk the graph
    // over the documents' encodings for `candidates` per query (its ids are the multi-vector
    // index's slots; filter in those slots), re-rank them by exact Chamfer from the token
    // store, map slots to ids through `table` (bindings_multivector.hpp).
    py::tuple search_multivector(const FdeEncoder& encoder, const py::array& q_tokens, const py::array& q_offsets,
                                 const py::tuple& store, std::size_t k, std::size_t candidates, std::size_t ef,
                                 bool buffered, const py::object& carve, const py::object& filter_ids,
                                 const py::object& filter_offsets, const py::object& filter_mask, IdTable& table,
                                 long threads) {
        if (graph_->spec().storage == Storage::bits || graph_->spec().dim != encoder.out_dim())
            throw std::invalid_argument("search_multivector: the graph must hold the encodings");
        MultiVectorRequest r = multivector_request(encoder, q_tokens, q_offsets, store, k, candidates, carve);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, r.queries.n);
        const std::size_t thread_n = resolve_threads(threads);
        return run_multivector(kernels_for(level_), r, table, thread_n,
                               [&](const float* fde, std::size_t nq, std::size_t c, float* d, std::int64_t* ids) {
                                   std::shared_lock<RwLock> lock(mutex_);
                                   graph_->search(fde, nq, c, ef, filter, false, thread_n, d, ids, buffered);
                               });
    }

    // Lean path for one 1-D query without filter (the per-call cost matters at high QPS):
    // query (dim,) float32 or (nbytes,) codes; returns 1-D (k,) distances and ids.
    // code_buffer: storage "rabitq" only, see search (0 = the default).
    py::tuple search1(const py::array& query, std::size_t k, std::size_t ef, std::size_t code_buffer) {
        const StoreSpec& spec = graph_->spec();
        const std::uint8_t* q = array_bytes(query, query_bytes(spec), query.itemsize(), "queries");
        check_k(k);
        if (spec.storage != Storage::bits) {
            const float* f = reinterpret_cast<const float*>(q);
            bool finite = true;
            for (std::size_t j = 0; j < spec.dim; ++j) finite &= std::isfinite(f[j]);
            if (!finite)
                throw std::invalid_argument("queries contains NaN or infinite values in 1 row(s); "
                                            "clean or drop those rows first");
        }
        FloatArray distances(k);
        IdArray out_ids(k);
        float* d_ptr = distances.mutable_data();
        std::int64_t* i_ptr = out_ids.mutable_data();
        {
            py::gil_scoped_release release;
            std::shared_lock<RwLock> lock(mutex_);
            graph_->search(q, 1, k, ef, IdFilter{}, spec.metric == Metric::cosine, 1, d_ptr, i_ptr, false,
                           code_buffer);
        }
        return py::make_tuple(distances, out_ids);
    }

    // Id lookups under the handle's read lock and the graph's id lock (removes run beside).
    bool contains(std::int64_t id) {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        return graph_->with_ids([&](const IdMap& map) { return map.contains(id); });
    }
    IdArray ids() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        std::vector<std::int64_t> live = graph_->with_ids([](const IdMap& map) {
            std::vector<std::int64_t> out(map.size());
            map.live_ids(out.data());
            return out;
        });
        py::gil_scoped_acquire gil;
        IdArray out(live.size());
        std::copy(live.begin(), live.end(), out.mutable_data());
        return out;
    }
    py::tuple rows(const py::array& ids) {
        // rows_of_ids takes the handle's read lock; the id lock inside it, around the lookups
        return rows_of_ids(graph_->idmap(), graph_->spec().row_bytes, mutex_, ids,
                           [&](std::size_t s) { return graph_->row(static_cast<std::uint32_t>(s)); },
                           [&](auto body) { graph_->with_ids([&](const IdMap&) { body(); return 0; }); });
    }

    // Links of a slot at a level (for tests and inspection).
    py::array_t<std::uint32_t> neighbours(std::size_t slot, int level) {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        py::gil_scoped_acquire gil;
        if (slot >= graph_->slot_count() || level < 0 || graph_->levels()[slot] < level)
            throw std::invalid_argument("neighbours: no such slot / level");
        const std::uint32_t* list = graph_->links(static_cast<std::uint32_t>(slot), level);
        py::array_t<std::uint32_t> out(list[0]);
        std::memcpy(out.mutable_data(), list + 1, 4 * list[0]);
        return out;
    }

    py::dict state() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        py::gil_scoped_acquire gil;
        const HnswGraph& g = *graph_;
        std::shared_lock<std::shared_mutex> ids_lock = g.lock_ids();  // one snapshot: no remove meanwhile
        std::size_t n = g.slot_count();
        py::array_t<std::uint8_t> blocks({n, g.block_bytes()});
        g.copy_blocks(blocks.mutable_data());
        py::array_t<std::int32_t> levels(n);
        if (n) std::memcpy(levels.mutable_data(), g.levels(), n * 4);
        IdArray ids(n);
        if (n) std::memcpy(ids.mutable_data(), g.idmap().ids(), n * 8);
        std::size_t total = 0;
        for (std::size_t s = 0; s < n; ++s) total += g.upper_size(static_cast<std::uint32_t>(s));
        py::array_t<std::uint32_t> upper(total);
        std::uint32_t* dst = upper.mutable_data();
        for (std::size_t s = 0; s < n; ++s) {
            int level = g.levels()[s];
            for (int l = 1; l <= level; ++l) {
                std::memcpy(dst, g.links(static_cast<std::uint32_t>(s), l), 4 * (1 + g.M()));
                dst += 1 + g.M();
            }
        }
        py::dict out;
        out["blocks"] = blocks;
        out["levels"] = levels;
        out["ids"] = ids;
        out["next_id"] = g.idmap().next_id();
        out["upper"] = upper;
        out["entry"] = g.entry() == HnswGraph::kNone ? std::int64_t{-1} : static_cast<std::int64_t>(g.entry());
        out["max_level"] = g.max_level();
        out["insert_count"] = g.insert_count();
        if (const RerankRows* rows = g.external_rows()) {  // rows of the same moment: count, CRC-32
            const std::size_t count = rows->count();
            out["rerank_count"] = count;
            out["rerank_crc32"] = count ? crc32_bytes(rows->data(), count * rows->spec().row_bytes) : 0u;
        }
        return out;
    }

    void restore(const py::array& blocks, const py::array& ids, const py::array& levels,
                 const py::array& upper, std::int64_t entry, int max_level, std::uint64_t insert_count,
                 std::int64_t next_id, bool borrow) {
        std::size_t n = static_cast<std::size_t>(levels.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        const std::uint8_t* b = array_bytes(blocks, n * graph_->block_bytes(), 1, "blocks");
        const std::int32_t* lv = typed<std::int32_t>(levels, n, "levels");
        const std::uint32_t* up = typed<std::uint32_t>(upper, static_cast<std::size_t>(upper.size()), "upper");
        if (entry < -1 || entry >= static_cast<std::int64_t>(n))
            throw std::invalid_argument("hnsw file: entry point out of range");
        std::uint32_t e = entry < 0 ? HnswGraph::kNone : static_cast<std::uint32_t>(entry);
        if (borrow) keepalive_ = blocks;  // the graph reads these blocks until it owns a copy
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        graph_->restore(b, borrow, n, id_ptr, lv, up, static_cast<std::size_t>(upper.size()), e, max_level, insert_count);
        graph_->set_next_id(next_id);
    }

    std::size_t slot_count() const { return graph_->slot_count(); }
    std::size_t live_count() { return read_locked(mutex_, [&] { return graph_->live_count(); }); }
    std::size_t tombstones() { return read_locked(mutex_, [&] { return graph_->tombstones(); }); }
    std::uint64_t insert_count() { return read_locked(mutex_, [&] { return graph_->insert_count(); }); }
    std::size_t nbytes() { return read_locked(mutex_, [&] { return graph_->nbytes(); }); }
    std::size_t block_bytes() const { return graph_->block_bytes(); }
    std::string simd() const { return level_name(level_); }

    HnswParts parts() { return {graph_.get(), &mutex_}; }

   private:
    SimdLevel level_;
    std::unique_ptr<HnswGraph> graph_;
    RwLock mutex_;
    py::object keepalive_;  // memory-mapped blocks borrowed by the graph
};

}  // namespace

HnswParts hnsw_parts(const py::object& handle) { return handle.cast<HnswHandle&>().parts(); }

void hnsw_insert(HnswParts g, const std::uint8_t* rows, const std::int64_t* ids, std::int64_t* assigned,
                 const std::int64_t* order, std::size_t n, std::size_t threads) {
    // Searches (and other adds) run while the nodes are linked; growth and ids change
    // alone. end_add (exclusive) only after an interrupt: otherwise every node is in.
    HnswGraph::PendingAdd pending;
    {
        std::unique_lock<RwLock> lock(*g.lock);
        pending = g.graph->begin_add(rows, ids, assigned, order, n);
    }
    try {
        std::shared_lock<RwLock> lock(*g.lock);
        g.graph->insert_nodes(pending, threads);
    } catch (...) {
        // interrupted: the nodes not inserted give their ids and slots back (alone)
        std::unique_lock<RwLock> lock(*g.lock);
        g.graph->end_add(pending);
        throw;
    }
}

void hnsw_insert_or_undo(HnswParts g, const std::uint8_t* rows, const std::int64_t* slots, std::size_t n,
                         std::size_t threads, IdTable& table, const std::int64_t* user_ids, bool reuse) {
    try {
        hnsw_insert(g, rows, slots, nullptr, nullptr, n, threads);
    } catch (...) {
        hnsw_remove(g, slots, n, 1);
        table.unbind(user_ids, n, reuse);
        throw;
    }
}

std::size_t hnsw_remove(HnswParts g, const std::int64_t* ids, std::size_t n, std::size_t threads) {
    std::size_t removed;
    {
        std::shared_lock<RwLock> lock(*g.lock);  // beside searches and inserts
        removed = g.graph->remove(ids, n);
    }
    if (removed && g.graph->compact_due()) {  // once per ~10% of the nodes: alone
        std::unique_lock<RwLock> lock(*g.lock);
        if (g.graph->compact_due()) g.graph->compact(threads);
    }
    return removed;
}

namespace {

// Sums of every row of `nblocks` fast-scan blocks for one query's nibble tables with the active
// level's one-query kernel (tests: the graph walk's kernel against a NumPy reference).
py::array_t<std::uint16_t> fastscan1_sums(const py::array& blocks, std::size_t nblocks, std::size_t m4,
                                          const py::array& lut) {
    if (m4 == 0 || m4 % 4 != 0) throw std::invalid_argument("m4 must be a positive multiple of 4, got " + std::to_string(m4));
    const std::uint8_t* b = array_bytes(blocks, nblocks * (m4 / 2) * 32, 1, "blocks");
    const std::uint8_t* t = array_bytes(lut, m4 * 32, 1, "lut");
    for (std::size_t i = 0; i < m4 * 32; ++i)
        if (t[i] > 63) throw std::invalid_argument("lut entries must be <= 63, got " + std::to_string(t[i]));
    if (m4 * 63 >= 65536) throw std::invalid_argument("m4 * 63 must be < 65536, got m4 = " + std::to_string(m4));
    py::array_t<std::uint16_t> out(static_cast<py::ssize_t>(nblocks * 32));
    std::uint16_t* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        active_kernels().pq.fastscan1_u4(b, nblocks, m4, t, o);
    }
    return out;
}

}  // namespace

void bind_hnsw(py::module_& m) {
    m.def("pq_fastscan1_sums", &fastscan1_sums, py::arg("blocks"), py::arg("nblocks"), py::arg("m4"), py::arg("lut"));
    py::class_<HnswHandle>(m, "HnswGraph")
        .def(py::init<const std::string&, const std::string&, std::size_t, std::size_t, std::size_t, std::uint64_t,
                      const py::object&>(),
             py::arg("storage"), py::arg("metric"), py::arg("dim"), py::arg("M"),
             py::arg("ef_construction"), py::arg("seed"), py::arg("rows") = py::none())
        .def("set_ranges", &HnswHandle::set_ranges)
        .def_property("int8_queries", &HnswHandle::int8_queries, &HnswHandle::set_int8_queries)
        .def("add", [](HnswHandle& h, const py::array& rows, const py::object& ids,
                       const py::object& order, const py::object& threads) {
                 return h.add(rows, ids, order, threads_arg(threads)); },
             py::arg("rows"), py::arg("ids") = py::none(), py::arg("order") = py::none(),
             py::arg("threads") = py::none())
        .def("remove", [](HnswHandle& h, const py::array& ids, const py::object& threads) {
                 return h.remove(ids, threads_arg(threads)); },
             py::arg("ids"), py::arg("threads") = py::none())
        .def("compact", [](HnswHandle& h, const py::object& threads) {
                 return h.compact(threads_arg(threads)); },
             py::arg("threads") = py::none())
        .def("search", [](HnswHandle& h, const py::array& queries, std::size_t nq, std::size_t k, std::size_t ef,
                          const py::object& filter_ids, const py::object& filter_offsets, const py::object& filter_mask, bool normalize,
                          const py::object& threads, bool buffered, std::size_t code_buffer) {
                 return h.search(queries, nq, k, ef, filter_ids, filter_offsets, filter_mask, normalize,
                                 threads_arg(threads), buffered, code_buffer); },
             py::arg("queries"), py::arg("nq"), py::arg("k"), py::arg("ef"),
             py::arg("filter_ids") = py::none(), py::arg("filter_offsets") = py::none(),
             py::arg("filter_mask") = py::none(),
             py::arg("normalize") = false, py::arg("threads") = py::none(), py::arg("buffered") = false,
             py::arg("code_buffer") = 0)
        .def("enable_codes", &HnswHandle::enable_codes, py::arg("bits"), py::arg("query_bits"),
             py::arg("rotation"), py::arg("params"), py::arg("centre"))
        .def("search_multivector", [](HnswHandle& h, const FdeEncoder& encoder, const py::array& q_tokens,
                                      const py::array& q_offsets, const py::tuple& store, std::size_t k,
                                      std::size_t candidates, std::size_t ef, bool buffered, const py::object& carve,
                                      const py::object& filter_ids, const py::object& filter_offsets,
                                      const py::object& filter_mask, IdTable& table, const py::object& threads) {
                 return h.search_multivector(encoder, q_tokens, q_offsets, store, k, candidates, ef, buffered, carve,
                                             filter_ids, filter_offsets, filter_mask, table, threads_arg(threads)); },
             py::arg("encoder"), py::arg("q_tokens"), py::arg("q_offsets"), py::arg("store"), py::arg("k"),
             py::arg("candidates"), py::arg("ef"), py::arg("buffered"), py::arg("carve"), py::arg("filter_ids"),
             py::arg("filter_offsets"), py::arg("filter_mask"), py::arg("table"), py::arg("threads"))
        .def("search1", &HnswHandle::search1, py::arg("query"), py::arg("k"), py::arg("ef"),
             py::arg("code_buffer") = 0)
        .def("__contains__", &HnswHandle::contains)
        .def("__len__", &HnswHandle::live_count)
        .def("ids", &HnswHandle::ids)
        .def("rows", &HnswHandle::rows)
        .def("neighbours", &HnswHandle::neighbours)
        .def("state", &HnswHandle::state)
        .def("restore", &HnswHandle::restore, py::arg("blocks"), py::arg("ids"), py::arg("levels"), py::arg("upper"),
             py::arg("entry"), py::arg("max_level"), py::arg("insert_count"), py::arg("next_id"),
             py::arg("borrow"))
        .def_property_readonly("slot_count", &HnswHandle::slot_count)
        .def_property_readonly("live_count", &HnswHandle::live_count)
        .def_property_readonly("tombstones", &HnswHandle::tombstones)
        .def_property_readonly("insert_count", &HnswHandle::insert_count)
        .def_property_readonly("nbytes", &HnswHandle::nbytes)
        .def_property_readonly("block_bytes", &HnswHandle::block_bytes)
        .def_property_readonly("simd", &HnswHandle::simd);
}

}  // namespace simdex
