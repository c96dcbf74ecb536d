// Shared helpers of the binding files: cheap re-checks of arrays that Python already
// validated (the C++ side never copies or converts), enum parsing, GIL release.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <shared_mutex>

#include "rwlock.hpp"
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dispatch.hpp"
#include "index/idmap.hpp"
#include "index/rerank.hpp"
#include "index/scorer.hpp"
#include "parallel.hpp"

namespace simdex {
namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style>;
using IdArray = py::array_t<std::int64_t, py::array::c_style>;

// A (nq, k) top-k result: fill(distances, ids) runs with the GIL released and writes both
// (nq, k) buffers; returns the tuple (distances float32, ids int64).
template <class Fill>
py::tuple topk_result(std::size_t nq, std::size_t k, Fill&& fill) {
    FloatArray distances({nq, k});
    IdArray ids({nq, k});
    float* d_ptr = distances.mutable_data();
    std::int64_t* i_ptr = ids.mutable_data();
    {
        py::gil_scoped_release release;
        fill(d_ptr, i_ptr);
    }
    return py::make_tuple(distances, ids);
}

// Raw pointer to a C-contiguous array of exactly `bytes` bytes (any dtype of itemsize
// `itemsize`). Throws std::invalid_argument (-> ValueError) on mismatch.
inline const std::uint8_t* array_bytes(const py::array& a, std::size_t bytes, std::size_t itemsize,
                                       const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    if (static_cast<std::size_t>(a.itemsize()) != itemsize)
        throw std::invalid_argument(std::string(name) + " has item size " +
                                    std::to_string(a.itemsize()) + ", expected " +
                                    std::to_string(itemsize));
    if (static_cast<std::size_t>(a.nbytes()) != bytes)
        throw std::invalid_argument(std::string(name) + " holds " + std::to_string(a.nbytes()) +
                                    " bytes, expected " + std::to_string(bytes));
    return static_cast<const std::uint8_t*>(a.data());
}

template <class T>
const T* typed(const py::array& a, std::size_t count, const char* name) {
    return reinterpret_cast<const T*>(array_bytes(a, count * sizeof(T), sizeof(T), name));
}

inline std::uint8_t* mutable_bytes(py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style) || !a.writeable())
        throw std::invalid_argument(std::string(name) + " must be a writeable C-contiguous array");
    return static_cast<std::uint8_t*>(a.mutable_data());
}

inline Storage parse_storage(const std::string& s) {
    if (s == "float32") return Storage::f32;
    if (s == "float16") return Storage::f16;
    if (s == "bfloat16") return Storage::bf16;
    if (s == "int8") return Storage::u8;
    if (s == "bits") return Storage::bits;
    throw std::invalid_argument("unknown storage '" + s + "'");
}

inline Metric parse_metric(const std::string& s) {
    if (s == "l2") return Metric::l2;
    if (s == "ip") return Metric::ip;
    if (s == "cosine") return Metric::cosine;
    if (s == "hamming") return Metric::hamming;
    throw std::invalid_argument("unknown metric '" + s + "'");
}

// Builds a StoreSpec; lo/scale (int8 storage) are (dim,) float32 arrays or None.
// A StoreSpec without int8 ranges (index cores copy theirs in with set_ranges).
inline StoreSpec unranged_spec(const std::string& storage, const std::string& metric, std::size_t dim) {
    StoreSpec spec;
    spec.storage = parse_storage(storage);
    spec.metric = parse_metric(metric);
    spec.dim = dim;
    spec.row_bytes = row_bytes_for(spec.storage, dim);
    return spec;
}

// (lo, scale) (dim,) float32 arrays of int8 ranges.
inline std::pair<const float*, const float*> range_args(const py::array& lo, const py::array& scale,
                                                        std::size_t dim) {
    return {typed<float>(lo, dim, "lo"), typed<float>(scale, dim, "scale")};
}

inline StoreSpec make_spec(const std::string& storage, const std::string& metric, std::size_t dim,
                           const py::object& lo, const py::object& scale) {
    StoreSpec spec = unranged_spec(storage, metric, dim);
    if ((spec.storage == Storage::bits) != (spec.metric == Metric::hamming))
        throw std::invalid_argument("metric 'hamming' goes with bit codes and only with them");
    if (spec.storage == Storage::u8) {
        if (lo.is_none() || scale.is_none())
            throw std::invalid_argument("int8 storage needs trained lo and scale arrays");
        spec.lo = typed<float>(lo.cast<py::array>(), dim, "lo");
        spec.scale = typed<float>(scale.cast<py::array>(), dim, "scale");
    }
    return spec;
}

// k as given to a search: >= 1.
inline void check_k(std::size_t k) {
    if (k < 1) throw std::invalid_argument("k must be >= 1; got " + std::to_string(k));
}

// mask: None or a C-contiguous (n,) uint8 array, nonzero = allowed.
inline const std::uint8_t* optional_mask(const py::object& mask, std::size_t n) {
    if (mask.is_none()) return nullptr;
    return array_bytes(mask.cast<py::array>(), n, 1, "mask");
}

// threads: None or int -> count (None/0 = all available cores)
inline std::size_t thread_count(const py::object& threads) {
    if (threads.is_none()) return available_cores();
    long t = threads.cast<long>();
    if (t < 1) throw std::invalid_argument("threads must be >= 1 or None; got " + std::to_string(t));
    return static_cast<std::size_t>(t);
}

// threads: None or int -> the long that resolve_threads takes (0 = all available cores).
inline long threads_arg(const py::object& threads) {
    return threads.is_none() ? 0 : static_cast<long>(thread_count(threads));
}

// A search filter as passed by Python (_checks.as_filter): None; a byte mask by id
// (mask (m,) uint8); or allowed ids (m,) int64 with offsets (lists + 1,) int64 (one list
// shared by every query, or one per query).
inline IdFilter filter_arg(const py::object& ids, const py::object& offsets, const py::object& mask,
                           std::size_t nq) {
    IdFilter f;
    if (!mask.is_none()) {
        py::array m = mask.cast<py::array>();
        f.id_mask_len = static_cast<std::size_t>(m.size());
        static const std::uint8_t nothing = 0;
        f.id_mask = f.id_mask_len ? array_bytes(m, f.id_mask_len, 1, "filter mask") : &nothing;
        return f;
    }
    if (ids.is_none()) return f;
    py::array o = offsets.cast<py::array>();
    f.lists = static_cast<std::size_t>(o.size()) - 1;
    if (o.size() < 2 || (f.lists != 1 && f.lists != nq))
        throw std::invalid_argument("filter: one list of allowed ids, or one per query row (" +
                                    std::to_string(nq) + ")");
    f.offsets = typed<std::int64_t>(o, f.lists + 1, "filter offsets");
    py::array a = ids.cast<py::array>();
    std::size_t m = static_cast<std::size_t>(a.size());
    f.ids = m ? typed<std::int64_t>(a, m, "filter ids") : nullptr;
    for (std::size_t i = 0; i < f.lists; ++i)
        if (f.offsets[i] < 0 || f.offsets[i] > f.offsets[i + 1] || static_cast<std::size_t>(f.offsets[i + 1]) > m)
            throw std::invalid_argument("filter offsets are not ascending within the ids");
    return f;
}

// Arguments of an index add: rows (n, row_bytes) and ids (n,) int64 or None; `out` is the
// ids array returned to Python (the given one, or filled through `assigned`).
struct AddArgs {
    std::size_t n = 0;
    const std::uint8_t* rows = nullptr;
    const std::int64_t* ids = nullptr;   // nullptr: assign sequential ids
    std::int64_t* assigned = nullptr;    // where sequential ids go
    IdArray out;
};

// The ids of an add of n rows: given (n,) int64, or None = sequential ids written to assigned.
inline void id_args(AddArgs& a, const py::object& ids) {
    if (ids.is_none()) {
        a.out = IdArray(a.n);
        a.assigned = a.out.mutable_data();
    } else {
        a.out = ids.cast<IdArray>();
        a.ids = typed<std::int64_t>(a.out, a.n, "ids");
    }
}

inline AddArgs add_args(const py::array& rows, const py::object& ids, std::size_t row_bytes) {
    AddArgs a;
    a.n = static_cast<std::size_t>(rows.shape(0));
    a.rows = array_bytes(rows, a.n * row_bytes, rows.itemsize(), "rows");
    id_args(a, ids);
    return a;
}

// The lock rule of every index handle: never wait for the index lock while holding the GIL
// (a lock holder may need the GIL: the Ctrl-C check of parallel_for, allocating results), so
// every acquisition below releases the GIL first.

// f() under a handle's read lock (the small getters of the index handles).
template <class F>
auto read_locked(RwLock& mutex, F f) {
    py::gil_scoped_release release;
    std::shared_lock<RwLock> lock(mutex);
    return f();
}

// Id queries shared by the index handles (FlatCore, HnswGraph), under the handle's read lock.
inline bool contains_id(const IdMap& map, RwLock& mutex, std::int64_t id) {
    py::gil_scoped_release release;
    std::shared_lock<RwLock> lock(mutex);
    return map.contains(id);
}

inline IdArray live_ids(const IdMap& map, RwLock& mutex) {
    py::gil_scoped_release release;
    std::shared_lock<RwLock> lock(mutex);
    py::gil_scoped_acquire gil;
    IdArray out(map.size());
    map.live_ids(out.mutable_data());
    return out;
}

// Stored rows of the given ids: ((n, row_bytes) uint8, (n,) bool found); missing ids give
// zero rows. row_at(slot) -> const uint8_t*; around(body) runs the lookups (under a lock of
// the index's own, for one whose removes run under the shared lock).
template <class RowAt, class Around>
py::tuple rows_of_ids(const IdMap& map, std::size_t row_bytes, RwLock& mutex,
                      const py::array& ids, RowAt row_at, Around around) {
    std::size_t n = static_cast<std::size_t>(ids.size());
    const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
    py::array_t<std::uint8_t> out({n, row_bytes});
    py::array_t<bool> found(n);
    std::uint8_t* dst = out.mutable_data();
    bool* ok = found.mutable_data();
    {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex);
        around([&] {
            for (std::size_t i = 0; i < n; ++i) {
                std::int64_t s = map.find(id_ptr[i]);
                ok[i] = s >= 0;
                if (s >= 0)
                    std::memcpy(dst + i * row_bytes, row_at(static_cast<std::size_t>(s)), row_bytes);
                else
                    std::memset(dst + i * row_bytes, 0, row_bytes);
            }
        });
    }
    return py::make_tuple(out, found);
}
template <class RowAt>
py::tuple rows_of_ids(const IdMap& map, std::size_t row_bytes, RwLock& mutex,
                      const py::array& ids, RowAt row_at) {
    return rows_of_ids(map, row_bytes, mutex, ids, row_at, [](auto body) { body(); });
}

void bind_kernels(py::module_& m);
void bind_hnsw(py::module_& m);
void bind_flat(py::module_& m);
void bind_ids(py::module_& m);
void bind_rerank(py::module_& m);
void bind_leanvec(py::module_& m);
void bind_pq(py::module_& m);
void bind_pqcore(py::module_& m);
void bind_binary(py::module_& m);

// The re-rank rows an index core owns: None or a simdex._core.RerankRows.
inline std::shared_ptr<RerankRows> rows_arg(const py::object& rows) {
    if (rows.is_none()) return nullptr;
    return rows.cast<std::shared_ptr<RerankRows>>();
}

// What the state() of an index core that owns re-rank rows adds for them (keys rerank_count and
// rerank_rows or rerank_crc32: _rerank.RerankStore.params / arrays), under the core's lock.
inline void rerank_state(const RerankRows* rows, py::dict& out) {
    if (!rows) return;
    const std::size_t rb = rows->spec().row_bytes, n = rows->count();
    out["rerank_count"] = n;
    if (rows->in_file()) {
        out["rerank_crc32"] = n ? crc32_bytes(rows->data(), n * rb) : 0u;
    } else {
        py::array_t<std::uint8_t> copy(n * rb);
        if (n) std::memcpy(copy.mutable_data(), rows->data(), n * rb);
        out["rerank_rows"] = copy;
    }
}

// The vectors() of an index core that owns re-rank rows (RerankRows, or null: none kept):
// the rows of ids decoded to float32 -> ((n, dim), (n,) bool found; missing ids get zeros),
// read under the handle's lock `mutex` (shared).
inline py::tuple rerank_vectors(const IdMap& map, const RerankRows* rows, RwLock& mutex, const py::array& ids,
                                std::size_t d) {
    const std::size_t n = static_cast<std::size_t>(ids.size());
    const std::int64_t* id_ptr = typed<std::int64_t>(ids, n, "ids");
    if (!rows) throw std::invalid_argument("the index keeps no re-rank rows");
    FloatArray out({n, d});
    py::array_t<bool> found(n);
    float* o = out.mutable_data();
    bool* ok = found.mutable_data();
    {
        py::gil_scoped_release release;
        std::shared_lock<RwLock> lock(mutex);
        std::vector<std::int64_t> slots(n);
        for (std::size_t i = 0; i < n; ++i) {
            const std::int64_t s = map.find(id_ptr[i]);
            ok[i] = s >= 0;
            slots[i] = s >= 0 ? s : 0;
        }
        if (n && rows->size()) rows->decode(slots.data(), n, o);
        for (std::size_t i = 0; i < n; ++i)
            if (!ok[i]) std::fill(o + i * d, o + (i + 1) * d, 0.0f);
    }
    return py::make_tuple(out, found);
}

}  // namespace simdex
