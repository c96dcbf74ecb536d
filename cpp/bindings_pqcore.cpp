// Bindings for the PQ index cores: simdex._core.PqCore, used by python/simdex/pq.py.
// Python validates every argument (and trains); here only cheap re-checks. Searches and
// encoding share the core's reader lock; add / remove / restore / set_trained take the writer
// lock, always after the GIL is released (docs/architecture.md).
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <shared_mutex>
#include <string>

#include "bindings_common.hpp"
#include "bindings_multivector.hpp"
#include "index/pqcore.hpp"

namespace simdex {
namespace {

// One search call for either core (nprobe: IVF-PQ's lists; PQ scans every code).
inline void core_search(const PqCore& core, const PqQuery& q, std::size_t, const IdFilter& filter,
                        std::size_t threads, float* d, std::int64_t* ids) {
    core.search(q, filter, threads, d, ids);
}
inline void core_search(const IvfPqCore& core, const PqQuery& q, std::size_t nprobe, const IdFilter& filter,
                        std::size_t threads, float* d, std::int64_t* ids) {
    core.search(q, nprobe, filter, threads, d, ids);
}

// What the PQ and IVF-PQ handles share: the core, its lock (the GIL released before waiting),
// the training generation, and the removes and id / row lookups, which read the same way.
template <class Core>
class PqHandleBase {
   public:
    std::size_t remove(const py::array& ids) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        return core_->remove(id_ptr, n);
    }

    bool contains(std::int64_t id) { return contains_id(core_->idmap(), mutex_, id); }
    IdArray ids() { return live_ids(core_->idmap(), mutex_); }

    // Re-rank rows of ids decoded to float32: ((n, dim), (n,) found).
    py::tuple vectors(const py::array& ids) {
        return rerank_vectors(core_->idmap(), core_->rerank(), mutex_, ids, core_->books().dim());
    }

    std::size_t nbytes() { return read_locked(mutex_, [&] { return core_->nbytes(); }); }
    std::string simd() const { return level_name(level_); }

    // MultiVectorIndex(index="pq" / "ivfpq").search in one call: encode the query sets, scan
    // the documents' encodings for `candidates` per query (nprobe lists for IVF-PQ; `scanned`
    // of them re-scored exactly when this index keeps its rows; its ids are the multi-vector
    // index's slots, filters name those), re-rank by exact Chamfer from the token store,
    // slots to ids through `table` (bindings_multivector.hpp).
    py::tuple search_multivector(const FdeEncoder& encoder, const py::array& q_tokens, const py::array& q_offsets,
                                 const py::tuple& store, std::size_t k, std::size_t candidates, std::size_t scanned,
                                 std::size_t nprobe, const py::object& carve, const py::object& filter_ids,
                                 const py::object& filter_offsets, const py::object& filter_mask, IdTable& table,
                                 const py::object& threads) {
        if (core_->books().dim() != encoder.out_dim())
            throw std::invalid_argument("search_multivector: the index must hold the encodings");
        MultiVectorRequest r = multivector_request(encoder, q_tokens, q_offsets, store, k, candidates, carve);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, r.queries.n);
        const std::size_t thread_n = thread_count(threads);
        return run_multivector(kernels_for(level_), r, table, thread_n,
                               [&](const float* fde, std::size_t nq, std::size_t c, float* d, std::int64_t* ids) {
                                   std::shared_lock<RwLock> lock(mutex_);
                                   core_search(*core_, PqQuery{fde, nq, c, std::max(scanned, c)}, nprobe, filter,
                                               thread_n, d, ids);
                               });
    }

   protected:
    explicit PqHandleBase(SimdLevel level) : level_(level) {}
    SimdLevel level_;
    std::unique_ptr<Core> core_;
    RwLock mutex_;
    std::uint64_t generation_ = 0;
};

class PqHandle : public PqHandleBase<PqCore> {
   public:
    PqHandle(std::size_t dim, std::size_t m, int nbits, const std::string& metric, const py::object& rerank)
        : PqHandleBase(active_level()), metric_(parse_metric(metric)) {
        core_.reset(new PqCore(kernels_for(level_), dim, m, nbits, metric_, rows_arg(rerank)));
    }

    void set_trained(const py::array& books, const py::object& rotation) {
        const PqCodebooks& b = core_->books();
        const float* bp = typed<float>(books, b.m() * b.ksub() * b.dsub(), "codebooks");
        const float* rp = rotation.is_none() ? nullptr : typed<float>(rotation.cast<py::array>(), b.dim() * b.dim(), "rotation");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->set_trained(bp, rp);
        ++generation_;
    }

    py::array_t<std::uint8_t> encode(const py::array& x, const py::object& threads) {
        const std::size_t d = core_->books().dim(), n = static_cast<std::size_t>(x.size()) / d;
        const float* xp = typed<float>(x, n * d, "x");
        std::size_t thread_n = thread_count(threads);
        py::array_t<std::uint8_t> out({n, core_->books().m()});
        std::uint8_t* o = out.mutable_data();
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        core_->encode(xp, n, thread_n, o);
        return out;
    }

    // x (n, dim) float32 prepared rows; codes (n, m) from encode() or None (encoded here,
    // under the shared lock, before the exclusive one is taken).
    IdArray add(const py::array& x, const py::object& codes, const py::object& ids, const py::object& threads) {
        const std::size_t d = core_->books().dim(), m = core_->books().m();
        const std::size_t n = static_cast<std::size_t>(x.size()) / d;
        const float* xp = typed<float>(x, n * d, "x");
        const std::uint8_t* given = codes.is_none() ? nullptr : array_bytes(codes.cast<py::array>(), n * m, 1, "codes");
        AddArgs a;
        a.n = n;
        id_args(a, ids);
        IdArray out = a.out;
        const std::int64_t* id_ptr = a.ids;
        std::int64_t* assigned = a.assigned;
        std::size_t thread_n = thread_count(threads);
        py::gil_scoped_release release;
        std::vector<std::uint8_t> encoded;
        for (;;) {
            std::uint64_t generation;
            if (!given) {
                std::shared_lock<RwLock> lock(mutex_);
                if (!core_->trained()) throw std::invalid_argument("PQIndex is not trained; call train(x) before add()");
                encoded.resize(n * m);
                core_->encode(xp, n, thread_n, encoded.data());
                generation = generation_;
            }
            std::unique_lock<RwLock> lock(mutex_);
            if (!given && generation != generation_) continue;  // retrained meanwhile: encode again
            core_->add(xp, given ? given : encoded.data(), id_ptr, assigned, n);
            break;
        }
        return out;
    }

    py::tuple search(const py::array& queries, std::size_t nq, std::size_t k, std::size_t candidates,
                     const py::object& filter_ids, const py::object& filter_offsets, const py::object& filter_mask,
                     const py::object& threads) {
        const float* q = typed<float>(queries, nq * core_->books().dim(), "queries");
        check_k(k);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        std::size_t thread_n = thread_count(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::shared_lock<RwLock> lock(mutex_);
            core_->search(PqQuery{q, nq, k, candidates}, filter, thread_n, d_ptr, i_ptr);
        });
    }

    // The lean path: one (dim,) float32 query, no filter; 1-D results. Checks what
    // _checks.as_float_rows checks (finite, magnitude bound) and normalises for cosine.
    // threads None: one thread unless the codes are large (PqCore::search1); 1: one thread.
    py::tuple search1(const py::array& query, std::size_t k, std::size_t candidates, const py::object& threads) {
        const std::size_t thread_n = threads.is_none() ? 0 : 1;
        const std::size_t d = core_->books().dim();
        const float* q = typed<float>(query, d, "queries");
        check_k(k);
        const float limit = std::sqrt(std::numeric_limits<float>::max() / (4.0f * static_cast<float>(d)));
        bool finite = true, bounded = true;
        double norm = 0;
        for (std::size_t j = 0; j < d; ++j) {
            finite &= std::isfinite(q[j]);
            bounded &= std::fabs(q[j]) <= limit;
            norm += static_cast<double>(q[j]) * q[j];
        }
        if (!finite)
            throw std::invalid_argument("queries contains NaN or infinite values in 1 row(s) (after conversion to "
                                        "float32); clean or drop those rows first");
        if (!bounded)
            throw std::invalid_argument("queries holds a value above " + std::to_string(limit) +
                                        " in magnitude: squared distances of " + std::to_string(d) +
                                        "-d float32 vectors overflow. Scale the vectors down");
        thread_local std::vector<float> unit;
        if (metric_ == Metric::cosine) {  // as kernels.normalize: float64 norm, zero rows stay zero
            const double scale = norm > 0 ? std::sqrt(norm) : 1.0;
            unit.resize(d);
            for (std::size_t j = 0; j < d; ++j) unit[j] = static_cast<float>(q[j] / scale);
            q = unit.data();
        }
        FloatArray distances(static_cast<py::ssize_t>(k));
        IdArray ids(static_cast<py::ssize_t>(k));
        float* d_ptr = distances.mutable_data();
        std::int64_t* i_ptr = ids.mutable_data();
        {
            py::gil_scoped_release release;
            thread_local PqCore::Scratch scratch;
            std::shared_lock<RwLock> lock(mutex_);
            core_->search1(q, k, candidates, thread_n, scratch, d_ptr, i_ptr);
        }
        return py::make_tuple(distances, ids);
    }

    // One consistent copy: {"codes": uint8 bytes, "ids": per slot, "next_id", "slots",
    // "rerank_rows": copy (in RAM) or None, "rerank_crc32"}.
    py::dict state() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        const RerankRows* rows = core_->rerank();
        std::shared_lock<RwLock> rows_lock;
        if (rows) rows_lock = std::shared_lock<RwLock>(rows->lock());
        py::gil_scoped_acquire gil;
        const std::size_t slots = core_->idmap().slots(), bytes = core_->code_bytes();
        py::array_t<std::uint8_t> codes(bytes);
        if (bytes) std::memcpy(codes.mutable_data(), core_->codes(), bytes);
        IdArray ids(slots);
        if (slots) std::memcpy(ids.mutable_data(), core_->idmap().ids(), slots * 8);
        py::dict out;
        out["codes"] = codes;
        out["ids"] = ids;
        out["next_id"] = core_->idmap().next_id();
        out["slots"] = slots;
        rerank_state(rows, out);
        return out;
    }

    void restore(const py::array& codes, const py::array& ids, std::int64_t next_id) {
        const std::size_t slots = static_cast<std::size_t>(ids.size()), m = core_->books().m();
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, slots, "ids");
        const std::size_t want = core_->books().ksub() == 256 ? slots * m : (slots + 31) / 32 * fastscan_m4(m) * 16;
        const std::uint8_t* c = array_bytes(codes, want, 1, "codes");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->restore(c, id_ptr, slots, next_id);
    }

    std::size_t size() { return read_locked(mutex_, [&] { return core_->idmap().size(); }); }
    std::size_t slot_count() { return read_locked(mutex_, [&] { return core_->idmap().slots(); }); }
    bool trained() { return read_locked(mutex_, [&] { return core_->trained(); }); }

   private:
    Metric metric_;
};

class IvfPqHandle : public PqHandleBase<IvfPqCore> {
   public:
    IvfPqHandle(std::size_t dim, std::size_t nlist, std::size_t m, int nbits, const std::string& metric,
                const py::object& rerank)
        : PqHandleBase(active_level()) {
        core_.reset(new IvfPqCore(kernels_for(level_), dim, nlist, m, nbits, parse_metric(metric), rows_arg(rerank)));
    }

    void set_trained(const py::array& centroids, const py::array& books, const py::object& list_tables) {
        const PqCodebooks& b = core_->books();
        const std::size_t nlist = core_->nlist();
        const float* cp = typed<float>(centroids, nlist * b.dim(), "centroids");
        const float* bp = typed<float>(books, b.m() * b.ksub() * b.dsub(), "codebooks");
        const float* tp = list_tables.is_none()
                              ? nullptr
                              : typed<float>(list_tables.cast<py::array>(), nlist * b.m() * b.ksub(), "list_tables");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->set_trained(cp, bp, tp);
        ++generation_;
    }

    // x (n, dim) -> (lists (n,) int64, residual codes (n, m) uint8).
    py::tuple encode(const py::array& x, const py::object& threads) {
        const std::size_t d = core_->books().dim(), n = static_cast<std::size_t>(x.size()) / d;
        const float* xp = typed<float>(x, n * d, "x");
        std::size_t thread_n = thread_count(threads);
        IdArray lists(n);
        py::array_t<std::uint8_t> codes({n, core_->books().m()});
        std::int64_t* l = lists.mutable_data();
        std::uint8_t* c = codes.mutable_data();
        {
            py::gil_scoped_release release;
            std::shared_lock<RwLock> lock(mutex_);
            core_->encode(xp, n, thread_n, l, c);
        }
        return py::make_tuple(lists, codes);
    }

    // x (n, dim) prepared rows; lists / codes from encode() or None (encoded here, under the
    // shared lock, before the exclusive one is taken).
    IdArray add(const py::array& x, const py::object& given_lists, const py::object& given_codes,
                const py::object& ids, const py::object& threads) {
        const std::size_t d = core_->books().dim(), m = core_->books().m();
        const std::size_t n = static_cast<std::size_t>(x.size()) / d;
        const float* xp = typed<float>(x, n * d, "x");
        const bool given = !given_lists.is_none();
        const std::int64_t* gl = given ? typed<std::int64_t>(given_lists.cast<py::array>(), n, "lists") : nullptr;
        const std::uint8_t* gc = given ? array_bytes(given_codes.cast<py::array>(), n * m, 1, "codes") : nullptr;
        AddArgs a;
        a.n = n;
        id_args(a, ids);
        IdArray out = a.out;
        const std::int64_t* id_ptr = a.ids;
        std::int64_t* assigned = a.assigned;
        std::size_t thread_n = thread_count(threads);
        py::gil_scoped_release release;
        std::vector<std::uint8_t> codes(given ? 0 : n * m);
        std::vector<std::int64_t> lists(given ? 0 : n);
        for (;;) {
            std::uint64_t generation = 0;
            if (!given) {  // encode under the shared lock: searches go on meanwhile
                std::shared_lock<RwLock> lock(mutex_);
                if (!core_->trained())
                    throw std::invalid_argument("IVFPQIndex is not trained; call train(x) before add()");
                core_->encode(xp, n, thread_n, lists.data(), codes.data());
                generation = generation_;
            }
            std::unique_lock<RwLock> lock(mutex_);
            if (!given && generation != generation_) continue;  // retrained meanwhile: encode again
            core_->add(xp, given ? gl : lists.data(), given ? gc : codes.data(), id_ptr, assigned, n);
            break;
        }
        return out;
    }

    py::tuple search(const py::array& queries, std::size_t nq, std::size_t k, std::size_t candidates,
                     std::size_t nprobe, const py::object& filter_ids, const py::object& filter_offsets,
                     const py::object& filter_mask, const py::object& threads) {
        const float* q = typed<float>(queries, nq * core_->books().dim(), "queries");
        check_k(k);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        std::size_t thread_n = thread_count(threads);
        return topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::shared_lock<RwLock> lock(mutex_);
            core_->search(PqQuery{q, nq, k, candidates}, nprobe, filter, thread_n, d_ptr, i_ptr);
        });
    }

    // One consistent copy: {"codes", "entry_slots", "offsets" (the lists as saved), "ids" per
    // slot, "next_id", and the re-rank rows' part (rerank_state)}.
    py::dict state() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        const RerankRows* rows = core_->rerank();
        std::shared_lock<RwLock> rows_lock;
        if (rows) rows_lock = std::shared_lock<RwLock>(rows->lock());
        py::gil_scoped_acquire gil;
        const IvfStore& lists = core_->lists();
        py::array_t<std::uint8_t> codes(lists.units() * lists.unit_bytes());
        IdArray entry(lists.entries()), offsets(core_->nlist() + 1);
        lists.flatten(codes.mutable_data(), entry.mutable_data(), offsets.mutable_data());
        const std::size_t slots = core_->idmap().slots();
        IdArray ids(slots);
        if (slots) std::memcpy(ids.mutable_data(), core_->idmap().ids(), slots * 8);
        py::dict out;
        out["codes"] = codes;
        out["entry_slots"] = entry;
        out["offsets"] = offsets;
        out["ids"] = ids;
        out["next_id"] = core_->idmap().next_id();
        rerank_state(rows, out);
        return out;
    }

    void restore(const py::array& codes, const py::array& entry_slots, const py::array& offsets, const py::array& ids,
                 std::int64_t next_id) {
        const std::size_t nlist = core_->nlist(), slots = static_cast<std::size_t>(ids.size());
        const std::int64_t* o = typed<std::int64_t>(offsets, nlist + 1, "offsets");
        if (o[nlist] < 0) throw std::invalid_argument("IVF-PQ index file: negative offsets");
        const std::size_t units = static_cast<std::size_t>(o[nlist]);
        const IvfStore& lists = core_->lists();
        const std::uint8_t* c = array_bytes(codes, units * lists.unit_bytes(), 1, "codes");
        const std::size_t entries = units * (core_->books().ksub() == 256 ? 1 : 32);
        const std::int64_t* e = typed<std::int64_t>(entry_slots, entries, "entry_slots");
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, slots, "ids");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->restore(c, e, o, id_ptr, slots, next_id);
    }

    std::size_t size() { return read_locked(mutex_, [&] { return core_->idmap().size(); }); }
    std::size_t slot_count() { return read_locked(mutex_, [&] { return core_->idmap().slots(); }); }
};

}  // namespace

void bind_pqcore(py::module_& m) {
    py::class_<IvfPqHandle>(m, "IvfPqCore")
        .def(py::init<std::size_t, std::size_t, std::size_t, int, const std::string&, const py::object&>(),
             py::arg("dim"), py::arg("nlist"), py::arg("m"), py::arg("nbits"), py::arg("metric"),
             py::arg("rerank") = py::none())
        .def("set_trained", &IvfPqHandle::set_trained, py::arg("centroids"), py::arg("codebooks"),
             py::arg("list_tables") = py::none())
        .def("encode", &IvfPqHandle::encode, py::arg("x"), py::arg("threads") = py::none())
        .def("add", &IvfPqHandle::add, py::arg("x"), py::arg("lists") = py::none(), py::arg("codes") = py::none(),
             py::arg("ids") = py::none(), py::arg("threads") = py::none())
        .def("remove", &IvfPqHandle::remove, py::arg("ids"))
        .def("search", &IvfPqHandle::search, py::arg("queries"), py::arg("nq"), py::arg("k"), py::arg("candidates"),
             py::arg("nprobe"), py::arg("filter_ids") = py::none(), py::arg("filter_offsets") = py::none(),
             py::arg("filter_mask") = py::none(), py::arg("threads") = py::none())
        .def("search_multivector", &IvfPqHandle::search_multivector, py::arg("encoder"), py::arg("q_tokens"),
             py::arg("q_offsets"), py::arg("store"), py::arg("k"), py::arg("candidates"), py::arg("scanned"),
             py::arg("nprobe"), py::arg("carve"), py::arg("filter_ids"), py::arg("filter_offsets"),
             py::arg("filter_mask"), py::arg("table"), py::arg("threads"))
        .def("__contains__", &IvfPqHandle::contains)
        .def("ids", &IvfPqHandle::ids)
        .def("vectors", &IvfPqHandle::vectors, py::arg("ids"))
        .def("state", &IvfPqHandle::state)
        .def("restore", &IvfPqHandle::restore, py::arg("codes"), py::arg("entry_slots"), py::arg("offsets"),
             py::arg("ids"), py::arg("next_id"))
        .def("__len__", &IvfPqHandle::size)
        .def_property_readonly("slot_count", &IvfPqHandle::slot_count)
        .def_property_readonly("nbytes", &IvfPqHandle::nbytes)
        .def_property_readonly("simd", &IvfPqHandle::simd);
    py::class_<PqHandle>(m, "PqCore")
        .def(py::init<std::size_t, std::size_t, int, const std::string&, const py::object&>(), py::arg("dim"),
             py::arg("m"), py::arg("nbits"), py::arg("metric"), py::arg("rerank") = py::none())
        .def("set_trained", &PqHandle::set_trained, py::arg("codebooks"), py::arg("rotation") = py::none())
        .def("encode", &PqHandle::encode, py::arg("x"), py::arg("threads") = py::none())
        .def("add", &PqHandle::add, py::arg("x"), py::arg("codes") = py::none(), py::arg("ids") = py::none(),
             py::arg("threads") = py::none())
        .def("remove", &PqHandle::remove, py::arg("ids"))
        .def("search", &PqHandle::search, py::arg("queries"), py::arg("nq"), py::arg("k"), py::arg("candidates"),
             py::arg("filter_ids") = py::none(), py::arg("filter_offsets") = py::none(),
             py::arg("filter_mask") = py::none(), py::arg("threads") = py::none())
        .def("search_multivector", &PqHandle::search_multivector, py::arg("encoder"), py::arg("q_tokens"),
             py::arg("q_offsets"), py::arg("store"), py::arg("k"), py::arg("candidates"), py::arg("scanned"),
             py::arg("nprobe"), py::arg("carve"), py::arg("filter_ids"), py::arg("filter_offsets"),
             py::arg("filter_mask"), py::arg("table"), py::arg("threads"))
        .def("search1", &PqHandle::search1, py::arg("query"), py::arg("k"), py::arg("candidates"),
             py::arg("threads") = py::none())
        .def("__contains__", &PqHandle::contains)
        .def("ids", &PqHandle::ids)
        .def("vectors", &PqHandle::vectors, py::arg("ids"))
        .def("state", &PqHandle::state)
        .def("restore", &PqHandle::restore, py::arg("codes"), py::arg("ids"), py::arg("next_id"))
        .def("__len__", &PqHandle::size)
        .def_property_readonly("slot_count", &PqHandle::slot_count)
        .def_property_readonly("trained", &PqHandle::trained)
        .def_property_readonly("nbytes", &PqHandle::nbytes)
        .def_property_readonly("simd", &PqHandle::simd);
}

}  // namespace simdex
