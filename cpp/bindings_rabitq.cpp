// Bindings for RaBitQ: simdex._core.RaBitQCore (the quantizer, python/simdex/rabitq.py's
// RaBitQ) and RaBitQIndexCore (flat and IVF RaBitQ indexes). Python validates every argument;
// here only cheap re-checks. Work runs with the GIL released.
#include <cstring>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bindings_common.hpp"
#include "bindings_pipeline.hpp"
#include "index/rabitq.hpp"
#include "index/rabitq_index.hpp"

namespace simdex {

Rotation rotation_arg(const std::string& kind, std::size_t dim, const py::array& params) {
    const std::size_t D = rabitq_padded_dim(dim);
    Rotation::Kind k;
    std::size_t count;
    if (kind == "hadamard") {
        k = Rotation::Kind::hadamard;
        count = Rotation::kRounds * D;
    } else if (kind == "dense") {
        k = Rotation::Kind::dense;
        count = D * D;
    } else {
        throw std::invalid_argument("rotation must be 'hadamard' or 'dense'; got '" + kind + "'");
    }
    return Rotation(k, dim, typed<float>(params, count, "rotation"));
}

namespace {

const float* optional_centre(const py::object& centre, std::size_t dim) {
    if (centre.is_none()) return nullptr;
    return typed<float>(centre.cast<py::array>(), dim, "centre");
}

class RaBitQHandle {
   public:
    RaBitQHandle(std::size_t dim, int bits, int query_bits, const std::string& rotation, const py::array& params)
        : q_(dim, bits, query_bits, rotation_arg(rotation, dim, params)) {}

    // x (n, dim) float32 -> rows (n, row_bytes) uint8
    py::array_t<std::uint8_t> encode(const py::array& x, std::size_t n, const py::object& centre,
                                     const py::object& threads) {
        const float* xp = typed<float>(x, n * q_.dim(), "x");
        const float* c = optional_centre(centre, q_.dim());
        std::size_t t = thread_count(threads);
        const KernelTable& kernels = active_kernels();
        py::array_t<std::uint8_t> rows({n, q_.row_bytes()});
        std::uint8_t* out = rows.mutable_data();
        py::gil_scoped_release release;
        const std::size_t chunk = 256;
        parallel_for((n + chunk - 1) / chunk, t, [&](std::size_t task, std::size_t) {
            for (std::size_t i = task * chunk; i < std::min(n, (task + 1) * chunk); ++i)
                q_.encode(kernels, xp + i * q_.dim(), c, out + i * q_.row_bytes());
        });
        return rows;
    }

    FloatArray decode(const py::array& rows, std::size_t n, const py::object& centre) {
        const std::uint8_t* r = array_bytes(rows, n * q_.row_bytes(), 1, "codes");
        const float* c = optional_centre(centre, q_.dim());
        const KernelTable& kernels = active_kernels();
        FloatArray out({n, q_.dim()});
        float* o = out.mutable_data();
        py::gil_scoped_release release;
        for (std::size_t i = 0; i < n; ++i) q_.decode(kernels, r + i * q_.row_bytes(), c, o + i * q_.dim());
        return out;
    }

    // (nq, n) estimated distances and their errors at eps0 = 1; level "full" or "1bit".
    py::tuple estimate(const py::array& rows, std::size_t n, const py::array& queries, std::size_t nq,
                       const py::object& centre, const std::string& metric, const std::string& level) {
        const std::uint8_t* r = array_bytes(rows, n * q_.row_bytes(), 1, "codes");
        const float* qp = typed<float>(queries, nq * q_.dim(), "queries");
        const float* c = optional_centre(centre, q_.dim());
        Metric m = parse_metric(metric);
        if (m == Metric::hamming) throw std::invalid_argument("RaBitQ estimates l2, ip or cosine distances");
        const bool one_bit = level == "1bit";
        const KernelTable& kernels = active_kernels();
        FloatArray dist({nq, n}), err({nq, n});
        float* d = dist.mutable_data();
        float* e = err.mutable_data();
        {
            py::gil_scoped_release release;
            RaBitQQuery prepared;
            for (std::size_t i = 0; i < nq; ++i) {
                q_.prepare(kernels, qp + i * q_.dim(), c, m, prepared);
                for (std::size_t j = 0; j < n; ++j) {
                    const std::uint8_t* row = r + j * q_.row_bytes();
                    RaBitQEstimate est = one_bit ? q_.estimate_1bit(prepared, row) : q_.estimate(prepared, row);
                    d[i * n + j] = est.distance;
                    e[i * n + j] = est.error;
                }
            }
        }
        return py::make_tuple(dist, err);
    }

    // x (n, dim) -> (n, D) float64: the rotation (tests compare it with NumPy).
    py::array_t<double> rotate(const py::array& x, std::size_t n) {
        const float* xp = typed<float>(x, n * q_.dim(), "x");
        py::array_t<double> out({n, q_.padded_dim()});
        const KernelTable& kernels = active_kernels();
        for (std::size_t i = 0; i < n; ++i) q_.rotation().apply(kernels, xp + i * q_.dim(), out.mutable_data() + i * q_.padded_dim());
        return out;
    }

    std::size_t row_bytes() const { return q_.row_bytes(); }
    std::size_t code_bytes() const { return q_.code_bytes(); }
    std::size_t padded_dim() const { return q_.padded_dim(); }

   private:
    RaBitQ q_;
};

// The flat and IVF RaBitQ index core with its re-rank rows (None or a RerankRows, owned from
// construction). Searches share the reader lock; add (its codes and re-rank rows in one step),
// remove, set_centroids and restore take the writer lock, always after releasing the GIL.
class RaBitQIndexHandle {
   public:
    RaBitQIndexHandle(std::size_t dim, int bits, int query_bits, const std::string& rotation, const py::array& params,
                      const std::string& metric, std::size_t nlist, const py::object& rerank)
        : level_(active_level()) {
        RaBitQ q(dim, bits, query_bits, rotation_arg(rotation, dim, params));
        core_.reset(new RaBitQIndexCore(kernels_for(level_), q, parse_metric(metric), nlist, rows_arg(rerank)));
    }

    void set_centroids(const py::array& centroids) {
        const float* c = typed<float>(centroids, core_->nlist() * core_->quantizer().dim(), "centroids");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->set_centroids(c);
    }

    // x (n, dim) float32, lists (n,) int64 -> ids (n,); the codes and (kept) the re-rank rows
    // of x, or on an error neither
    IdArray add(const py::array& x, std::size_t n, const py::array& lists, const py::object& ids,
                  const py::object& threads) {
        const float* xp = typed<float>(x, n * core_->quantizer().dim(), "x");
        const std::int64_t* lp = typed<std::int64_t>(lists, n, "lists");
        std::size_t t = thread_count(threads);
        IdArray out_ids;
        std::vector<std::int64_t> slots(n);
        const std::int64_t* given = nullptr;
        std::int64_t* assigned = nullptr;
        if (ids.is_none()) {
            out_ids = IdArray(n);
            assigned = out_ids.mutable_data();
        } else {
            out_ids = ids.cast<IdArray>();
            given = typed<std::int64_t>(out_ids, n, "ids");
        }
        {
            py::gil_scoped_release release;
            std::vector<std::uint8_t> rows(n * core_->quantizer().row_bytes());
            std::vector<float> dots(core_->has_dots() ? n : 0);
            {
                std::shared_lock<RwLock> lock(mutex_);
                core_->encode_rows(xp, lp, n, t, rows.data(), dots.data());
            }
            std::unique_lock<RwLock> lock(mutex_);
            core_->add(xp, rows.data(), dots.data(), lp, given, assigned, slots.data(), n);
        }
        return out_ids;
    }

    std::size_t remove(const py::array& ids) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        return core_->remove(id_ptr, n);
    }

    // -> (distances (nq, k), ids (nq, k), stats dict), re-ranked by the core's rows if it keeps them
    py::tuple search(const py::array& queries, std::size_t nq, std::size_t k, std::size_t nprobe,
                     std::size_t candidates, float eps0, const py::object& filter_ids,
                     const py::object& filter_offsets, const py::object& filter_mask, const py::object& threads) {
        const float* q = typed<float>(queries, nq * core_->quantizer().dim(), "queries");
        check_k(k);
        IdFilter filter = filter_arg(filter_ids, filter_offsets, filter_mask, nq);
        std::size_t thread_n = thread_count(threads);
        RaBitQStats stats;
        py::tuple result = topk_result(nq, k, [&](float* d_ptr, std::int64_t* i_ptr) {
            std::shared_lock<RwLock> lock(mutex_);  // the core's lock first, then (in search) the rows'
            core_->search(q, nq, k, nprobe, candidates, eps0, filter, thread_n, d_ptr, i_ptr, stats);
        });
        py::dict s;
        s["queries"] = nq;
        s["scanned"] = stats.scanned;
        s["refined"] = stats.refined;
        s["candidates"] = stats.candidates;
        s["reranked"] = stats.reranked;
        s["pruned"] = stats.pruned;
        return py::make_tuple(result[0], result[1], s);
    }

    // Re-rank rows of ids decoded to float32: ((n, dim), (n,) found).
    py::tuple vectors(const py::array& ids) {
        return rerank_vectors(core_->idmap(), core_->rerank(), mutex_, ids, core_->quantizer().dim());
    }

    // Decoded rows of ids: ((n, dim) float32, (n,) bool found)
    py::tuple decode(const py::array& ids) {
        std::size_t n = static_cast<std::size_t>(ids.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
        const std::size_t dim = core_->quantizer().dim();
        FloatArray out({n, dim});
        py::array_t<bool> found(n);
        float* o = out.mutable_data();
        bool* ok = found.mutable_data();
        {
            py::gil_scoped_release release;
            std::shared_lock<RwLock> lock(mutex_);
            std::vector<std::uint8_t> row(core_->quantizer().row_bytes());
            for (std::size_t i = 0; i < n; ++i) {
                std::int64_t s = core_->idmap().find(id_ptr[i]);
                ok[i] = s >= 0;
                if (s < 0) {
                    std::fill(o + i * dim, o + (i + 1) * dim, 0.0f);
                    continue;
                }
                core_->row_of(static_cast<std::size_t>(s), row.data());
                core_->decode_row(static_cast<std::size_t>(s), row.data(), o + i * dim);
            }
        }
        return py::make_tuple(out, found);
    }

    bool contains(std::int64_t id) { return contains_id(core_->idmap(), mutex_, id); }
    IdArray ids() { return live_ids(core_->idmap(), mutex_); }

    // {"ids": (slots,) id per slot (-1 free), "next_id", "rows": (n, row_bytes), "lists": (n,), "slots": (n,),
    //  and for ip "dots": (n,) float32 <x - c, c> of each row, and the re-rank rows' part (rerank_state)}
    py::dict state() {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        const RerankRows* rerank = core_->rerank();
        std::shared_lock<RwLock> rows_lock;
        if (rerank) rows_lock = std::shared_lock<RwLock>(rerank->lock());
        py::gil_scoped_acquire gil;
        const std::size_t n = core_->size(), slots = core_->idmap().slots(), rb = core_->quantizer().row_bytes();
        py::array_t<std::uint8_t> rows({n, rb});
        IdArray lists(n), where(n), ids(slots);
        FloatArray dots(core_->has_dots() ? n : 0);
        core_->export_rows(rows.mutable_data(), lists.mutable_data(), where.mutable_data(), dots.mutable_data());
        if (slots) std::memcpy(ids.mutable_data(), core_->idmap().ids(), slots * 8);
        py::dict out;
        out["ids"] = ids;
        out["next_id"] = core_->idmap().next_id();
        out["rows"] = rows;
        out["lists"] = lists;
        out["slots"] = where;
        if (core_->has_dots()) out["dots"] = dots;
        rerank_state(rerank, out);
        return out;
    }

    // x (n, dim) float32 rows, lists (n,) -> (n,) float32 <x - c, c> (the ip per-row scalar)
    FloatArray centre_dots(const py::array& x, const py::array& lists) {
        const std::size_t n = static_cast<std::size_t>(lists.size());
        const float* xp = typed<float>(x, n * core_->quantizer().dim(), "x");
        const std::int64_t* lp = typed<std::int64_t>(lists, n, "lists");
        FloatArray out(n);
        float* o = out.mutable_data();
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex_);
        core_->centre_dots(xp, lp, n, o);
        return out;
    }

    // dots: (n,) float32 centre dots of ip rows, or None (l2 / cosine; ip files of version 1)
    void restore(const py::array& ids, std::int64_t next_id, const py::array& rows, const py::array& lists,
                 const py::array& slots, const py::object& dots) {
        std::size_t slot_count = static_cast<std::size_t>(ids.size()), n = static_cast<std::size_t>(lists.size());
        const std::int64_t* id_ptr = typed<std::int64_t>(ids, slot_count, "ids");
        const std::uint8_t* r = array_bytes(rows, n * core_->quantizer().row_bytes(), 1, "codes");
        const float* dp = dots.is_none() ? nullptr : typed<float>(dots.cast<py::array>(), n, "centre_dots");
        const std::int64_t* lp = typed<std::int64_t>(lists, n, "lists");
        const std::int64_t* sp = typed<std::int64_t>(slots, n, "slots");
        py::gil_scoped_release release;
        std::unique_lock<RwLock> lock(mutex_);
        core_->restore(id_ptr, slot_count, next_id, r, dp, lp, sp, n);
    }

    std::size_t size() { return read_locked(mutex_, [&] { return core_->size(); }); }
    std::size_t slot_count() { return read_locked(mutex_, [&] { return core_->idmap().slots(); }); }
    std::size_t nbytes() { return read_locked(mutex_, [&] { return core_->nbytes(); }); }
    std::size_t row_bytes() const { return core_->quantizer().row_bytes(); }
    std::string simd() const { return level_name(level_); }

   private:
    SimdLevel level_;
    std::unique_ptr<RaBitQIndexCore> core_;
    RwLock mutex_;
};

}  // namespace

void bind_rabitq(py::module_& m) {
    py::class_<RaBitQHandle>(m, "RaBitQCore")
        .def(py::init<std::size_t, int, int, const std::string&, const py::array&>(), py::arg("dim"),
             py::arg("bits"), py::arg("query_bits"), py::arg("rotation"), py::arg("params"))
        .def("encode", &RaBitQHandle::encode, py::arg("x"), py::arg("n"), py::arg("centre") = py::none(),
             py::arg("threads") = py::none())
        .def("decode", &RaBitQHandle::decode, py::arg("rows"), py::arg("n"), py::arg("centre") = py::none())
        .def("estimate", &RaBitQHandle::estimate, py::arg("rows"), py::arg("n"), py::arg("queries"),
             py::arg("nq"), py::arg("centre"), py::arg("metric"), py::arg("level"))
        .def("rotate", &RaBitQHandle::rotate, py::arg("x"), py::arg("n"))
        .def_property_readonly("row_bytes", &RaBitQHandle::row_bytes)
        .def_property_readonly("code_bytes", &RaBitQHandle::code_bytes)
        .def_property_readonly("padded_dim", &RaBitQHandle::padded_dim);

    py::class_<RaBitQIndexHandle>(m, "RaBitQIndexCore")
        .def(py::init<std::size_t, int, int, const std::string&, const py::array&, const std::string&, std::size_t,
                      const py::object&>(),
             py::arg("dim"), py::arg("bits"), py::arg("query_bits"), py::arg("rotation"), py::arg("params"),
             py::arg("metric"), py::arg("nlist"), py::arg("rerank") = py::none())
        .def("set_centroids", &RaBitQIndexHandle::set_centroids, py::arg("centroids"))
        .def("add", &RaBitQIndexHandle::add, py::arg("x"), py::arg("n"), py::arg("lists"), py::arg("ids") = py::none(),
             py::arg("threads") = py::none())
        .def("remove", &RaBitQIndexHandle::remove, py::arg("ids"))
        .def("search", &RaBitQIndexHandle::search, py::arg("queries"), py::arg("nq"), py::arg("k"), py::arg("nprobe"),
             py::arg("candidates"), py::arg("eps0"), py::arg("filter_ids") = py::none(),
             py::arg("filter_offsets") = py::none(), py::arg("filter_mask") = py::none(),
             py::arg("threads") = py::none())
        .def("vectors", &RaBitQIndexHandle::vectors, py::arg("ids"))
        .def("decode", &RaBitQIndexHandle::decode, py::arg("ids"))
        .def("__contains__", &RaBitQIndexHandle::contains)
        .def("ids", &RaBitQIndexHandle::ids)
        .def("state", &RaBitQIndexHandle::state)
        .def("restore", &RaBitQIndexHandle::restore, py::arg("ids"), py::arg("next_id"), py::arg("rows"),
             py::arg("lists"), py::arg("slots"), py::arg("dots") = py::none())
        .def("centre_dots", &RaBitQIndexHandle::centre_dots, py::arg("x"), py::arg("lists"))
        .def("__len__", &RaBitQIndexHandle::size)
        .def_property_readonly("slot_count", &RaBitQIndexHandle::slot_count)
        .def_property_readonly("nbytes", &RaBitQIndexHandle::nbytes)
        .def_property_readonly("row_bytes", &RaBitQIndexHandle::row_bytes)
        .def_property_readonly("simd", &RaBitQIndexHandle::simd);
}

}  // namespace simdex
