// Bindings: SIMD level control, kernels for tests, exact search and pairwise distances.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "bindings_common.hpp"
#include "index/exact.hpp"
#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {


// Every row of `data` against every query with the single-pair kernels (tests use this to
// check the pair kernels; search uses the rows/tile kernels).
FloatArray pair_distances(const py::array& data, std::size_t n, const py::array& queries,
                          std::size_t nq, const std::string& storage, const std::string& metric,
                          std::size_t dim, const py::object& lo, const py::object& scale) {
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    FloatArray out({nq, n});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        QueryScorer scorer(active_kernels(), spec);
        for (std::size_t i = 0; i < nq; ++i) {
            scorer.set_query(q + i * query_bytes(spec));
            for (std::size_t j = 0; j < n; ++j) dst[i * n + j] = scorer.distance(rows + j * spec.row_bytes);
        }
    }
    return out;
}

FloatArray pairwise(const py::array& data, std::size_t n, const py::array& queries, std::size_t nq,
                    const std::string& storage, const std::string& metric, std::size_t dim,
                    const py::object& lo, const py::object& scale, const py::object& threads) {
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, n});
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        pairwise_distances(active_kernels(), spec, rows, n, q, nq, thread_n, dst);
    }
    return out;
}

py::tuple search(const py::array& data, std::size_t n, const py::array& queries, std::size_t nq,
                 std::size_t k, const std::string& storage, const std::string& metric,
                 std::size_t dim, const py::object& lo, const py::object& scale,
                 const py::object& mask, const py::object& threads) {
    check_k(k);
    StoreSpec spec = make_spec(storage, metric, dim, lo, scale);
    const std::uint8_t* rows = array_bytes(data, n * spec.row_bytes, data.itemsize(), "data");
    const std::uint8_t* q = array_bytes(queries, nq * query_bytes(spec), queries.itemsize(), "queries");
    const std::uint8_t* mask_ptr = optional_mask(mask, n);
    std::size_t thread_n = thread_count(threads);
    return topk_result(nq, k, [&](float* d_ptr, std::int64_t* s_ptr) {
        exact_search(active_kernels(), spec, rows, n, q, nq, k, mask_ptr, thread_n, d_ptr, s_ptr);
    });
}

// (nq, n) float32 inner products of queries (nq, dim) with rows (n, dim), GIL released.
FloatArray inner_products_py(const py::array& rows, std::size_t n, const py::array& queries,
                             std::size_t nq, std::size_t dim, const py::object& threads) {
    const float* r = typed<float>(rows, n * dim, "rows");
    const float* q = typed<float>(queries, nq * dim, "queries");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, n});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        inner_products(active_kernels(), r, n, q, nq, dim, thread_n, o);
    }
    return out;
}

// inner_products_py through rows packed once by tier `pack_level`'s table (PackedRows), read
// with the active table; also whether the packed rows were read (same tier, one that packs)
// rather than the rows themselves.
py::tuple inner_products_prepacked_py(const py::array& rows, std::size_t n, const py::array& queries,
                                      std::size_t nq, std::size_t dim, const std::string& pack_level,
                                      const py::object& threads) {
    const float* r = typed<float>(rows, n * dim, "rows");
    const float* q = typed<float>(queries, nq * dim, "queries");
    const SimdLevel level = parse_level(pack_level);
    if (!tier_within(level, detected_level()))
        throw std::invalid_argument("pack_level: expected a tier this CPU runs, got '" + pack_level + "'");
    std::size_t thread_n = thread_count(threads);
    FloatArray out({nq, n});
    float* o = out.mutable_data();
    bool used = false;
    {
        py::gil_scoped_release release;
        const PackedRows packed(kernels_for(level), r, n, dim);
        used = packed.for_table(active_kernels(), n, dim) != nullptr;
        inner_products(active_kernels(), packed, r, n, q, nq, dim, thread_n, o);
    }
    return py::make_tuple(out, used);
}

// True when every float32 value is finite and below `limit` in magnitude: one pass over the
// bits (the bit patterns of non-negative floats order like their values, and NaN / inf sort
// above every finite one), vectorises at the baseline ISA, bandwidth-bound, GIL released.
bool all_finite(const py::array& values, float limit) {
    const auto* bits = typed<std::uint32_t>(values, static_cast<std::size_t>(values.size()), "values");
    std::size_t n = static_cast<std::size_t>(values.size());
    if (!(limit >= 0.0f)) throw std::invalid_argument("all_finite: limit must be >= 0");
    std::uint32_t limit_bits;
    std::memcpy(&limit_bits, &limit, sizeof(limit_bits));
    if (limit_bits > 0x7f800000u) limit_bits = 0x7f800000u;
    std::uint32_t bad = 0;
    {
        py::gil_scoped_release release;
        const std::size_t chunk = 1 << 16;
        for (std::size_t start = 0; start < n && !bad; start += chunk) {
            std::size_t end = std::min(n, start + chunk);
            for (std::size_t i = start; i < end; ++i)
                bad |= static_cast<std::uint32_t>((bits[i] & 0x7fffffffu) >= limit_bits);
        }
    }
    return bad == 0;
}

// The fast-scan tables of one rotated RaBitQ query (KernelTable::rabitq_tables at the active
// tier), for tests: v (4 m4,) float64 -> (lut (ceil(m4 / 4), 64) uint8, scale, bias, smax);
// the slots of groups past m4 in the last row stay 0.
py::tuple rabitq_tables_py(const py::array& v) {
    if (!py::isinstance<py::array_t<double>>(v))
        throw py::type_error("v must be a float64 array; got dtype " + std::string(py::str(v.dtype())));
    if (v.ndim() != 1 || v.shape(0) == 0 || v.shape(0) % 4 != 0)
        throw std::invalid_argument("v must have shape (4 m4,) with m4 >= 1; got " +
                                    std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(
                                        v.shape(), v.shape() + v.ndim()))))));
    const std::size_t m4 = static_cast<std::size_t>(v.shape(0)) / 4;
    const double* values = typed<double>(v, 4 * m4, "v");
    py::array_t<std::uint8_t> lut({(m4 + 3) / 4, std::size_t{64}});
    std::uint8_t* out = lut.mutable_data();
    std::memset(out, 0, (m4 + 3) / 4 * 64);
    float bias = 0, smax = 0;
    const float scale = active_kernels().rabitq_tables(values, m4, out, &bias, &smax);
    return py::make_tuple(lut, scale, bias, smax);
}

// ---- the lean path of sx.distances ---------------------------------------------------------
// One vector against one row or n rows (either side may be the single one), float32 for
// l2 / ip / cosine or uint8 codes for hamming, both C-contiguous native arrays: a raw
// METH_FASTCALL function (no pybind11 argument conversion), validation that reads a few
// header fields, no copies, and threads only when the work pays for them. Anything else
// returns None and sx.distances takes its general path, which also owns every error message
// (so a NaN or inf in the input, seen here as a non-finite result, goes there too).

struct Operand {
    const std::uint8_t* data = nullptr;
    std::size_t rows = 0, cols = 0;  // (rows, cols); a 1-D array is one row
    bool one_d = false;
};

// A C-contiguous aligned native-order ndarray of `type` ('f' float32, 'B' uint8), 1-D or 2-D,
// not empty.
bool plain_operand(PyObject* obj, char type, Operand& out) {
    const auto& api = py::detail::npy_api::get();
    if (!api.PyArray_Check_(obj)) return false;
    const auto* a = py::detail::array_proxy(obj);
    const auto* descr = py::detail::array_descriptor_proxy(a->descr);
    const int need = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (descr->type != type || (descr->byteorder != '=' && descr->byteorder != '|' &&
                                descr->byteorder != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? '>' : '<')) ||
        (a->flags & need) != need || a->nd < 1 || a->nd > 2)
        return false;
    out.data = reinterpret_cast<const std::uint8_t*>(a->data);
    out.one_d = a->nd == 1;
    out.rows = out.one_d ? 1 : static_cast<std::size_t>(a->dimensions[0]);
    out.cols = static_cast<std::size_t>(a->dimensions[out.one_d ? 0 : 1]);
    return out.rows > 0 && out.cols > 0;
}

// numpy.float32 scalar holding v, built from its public layout (numpy/arrayscalars.h:
// PyObject_HEAD then the value), as numpy's own PyArrayScalar_New does.
struct Float32Scalar {
    PyObject_HEAD
    float value;
};
PyObject* float32_scalar(float v) {
    static PyTypeObject* type = reinterpret_cast<PyTypeObject*>(
        py::object(py::module_::import("numpy").attr("float32")).release().ptr());
    PyObject* s = type->tp_alloc(type, 0);
    if (s != nullptr) reinterpret_cast<Float32Scalar*>(s)->value = v;
    return s;
}

enum class LeanMetric { l2, ip, cosine, hamming, none };

LeanMetric lean_metric(PyObject* name) {
    if (!PyUnicode_Check(name)) return LeanMetric::none;
    const char* text = PyUnicode_AsUTF8(name);
    if (text == nullptr) {
        PyErr_Clear();
        return LeanMetric::none;
    }
    for (auto [s, m] : {std::pair{"l2", LeanMetric::l2}, {"ip", LeanMetric::ip},
                        {"cosine", LeanMetric::cosine}, {"hamming", LeanMetric::hamming}})
        if (std::strcmp(text, s) == 0) return m;
    return LeanMetric::none;
}

// Distances of the single vector q to rows [r0, r1) of x, into out[r0 .. r1).
void lean_rows(const KernelTable& t, LeanMetric metric, const std::uint8_t* q, const std::uint8_t* x,
               std::size_t d, std::size_t r0, std::size_t r1, float* out) {
    const auto* qf = reinterpret_cast<const float*>(q);
    const auto* xf = reinterpret_cast<const float*>(x);
    switch (metric) {
        case LeanMetric::l2:
            t.l2_f32_rows(qf, xf + r0 * d, r1 - r0, d, out + r0);
            break;
        case LeanMetric::ip:
            t.dot_f32_rows(qf, xf + r0 * d, r1 - r0, d, out + r0);
            for (std::size_t i = r0; i < r1; ++i) out[i] = 1.0f - out[i];
            break;
        case LeanMetric::cosine: {  // 1 - <q, x> / (|q| |x|); a zero vector is at distance 1
            const float q_norm = std::sqrt(t.dot_f32(qf, qf, d));
            if (r1 - r0 <= 2) {  // a pair: no buffers to allocate
                for (std::size_t i = r0; i < r1; ++i) {
                    const float* row = xf + i * d;
                    const float both = q_norm * std::sqrt(t.dot_f32(row, row, d));
                    out[i] = both > 0.0f ? 1.0f - t.dot_f32(qf, row, d) / both : 1.0f;
                }
                break;
            }
            std::vector<float> norms(r1 - r0);  // <x, x> and <q, x> in one pass per row
            t.dot_norm_f32_rows(qf, xf + r0 * d, r1 - r0, d, out + r0, norms.data());
            for (std::size_t i = r0; i < r1; ++i) {
                const float both = q_norm * std::sqrt(norms[i - r0]);
                out[i] = both > 0.0f ? 1.0f - out[i] / both : 1.0f;
            }
            break;
        }
        case LeanMetric::hamming:
            for (std::size_t i = r0; i < r1; ++i) out[i] = static_cast<float>(t.hamming(q, x + i * d, d));
            break;
        case LeanMetric::none:
            break;
    }
}

bool finite(const float* v, std::size_t n) {
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, v + i, 4);
        bad |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}

constexpr std::size_t kLeanInlineElements = 1 << 18;  // below this (1 MB of float32) one thread
constexpr std::size_t kLeanBlockRows = 1024;          // rows per task above it

// threads argument: None -> 0 (all cores), an int >= 1 -> itself, anything else -> -1 (the
// general path raises the error).
long lean_threads(PyObject* arg) {
    if (arg == Py_None) return 0;
    if (!PyLong_Check(arg)) return -1;
    long threads = PyLong_AsLong(arg);
    if (threads < 1) {
        PyErr_Clear();
        return -1;
    }
    return threads;
}

// Distances of one query q to every row of `rows` into out (n,): on the calling thread for
// small work, else in blocks on the pool with the GIL released. False when a result is not
// finite because an input is not (the general path then names the bad rows).
bool lean_scan(const KernelTable& table, LeanMetric metric, const Operand& q, const Operand& rows,
               long threads, float* out) {
    const std::size_t n = rows.rows, d = rows.cols;
    if (n * d < kLeanInlineElements) {
        lean_rows(table, metric, q.data, rows.data, d, 0, n, out);
    } else {
        py::gil_scoped_release release;
        const std::size_t blocks = (n + kLeanBlockRows - 1) / kLeanBlockRows;
        parallel_for(blocks, resolve_threads(threads), [&](std::size_t b, std::size_t) {
            lean_rows(table, metric, q.data, rows.data, d, b * kLeanBlockRows,
                      std::min(n, (b + 1) * kLeanBlockRows), out);
        });
    }
    return metric == LeanMetric::hamming || finite(out, n) ||
           (finite(reinterpret_cast<const float*>(q.data), d) &&
            finite(reinterpret_cast<const float*>(rows.data), n * d));
}

// Python exceptions stay as they are; C++ ones become Python ones.
PyObject* lean_error() {
    try {
        throw;
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const Interrupted&) {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

// distances_lean(x, y, metric, threads) -> result, or None when the general path must run.
PyObject* distances_lean(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "distances_lean(x, y, metric, threads) takes 4 arguments");
        return nullptr;
    }
    const LeanMetric metric = lean_metric(args[2]);
    Operand x, y;
    const char type = metric == LeanMetric::hamming ? 'B' : 'f';
    const long threads = lean_threads(args[3]);
    if (metric == LeanMetric::none || threads < 0 || !plain_operand(args[0], type, x) ||
        !plain_operand(args[1], type, y) || x.cols != y.cols || (x.rows > 1 && y.rows > 1))
        Py_RETURN_NONE;
    // every metric here is symmetric: the single vector is the query
    const bool x_is_query = x.rows == 1;
    const Operand& q = x_is_query ? x : y;
    const Operand& rows = x_is_query ? y : x;
    const KernelTable& table = active_kernels();
    if (x.one_d && y.one_d) {
        float v;
        lean_rows(table, metric, q.data, rows.data, q.cols, 0, 1, &v);
        if (metric != LeanMetric::hamming && !std::isfinite(v) &&
            (!finite(reinterpret_cast<const float*>(x.data), x.cols) ||
             !finite(reinterpret_cast<const float*>(y.data), y.cols)))
            Py_RETURN_NONE;
        return float32_scalar(v);
    }
    std::vector<py::ssize_t> shape;
    if (!x.one_d) shape.push_back(static_cast<py::ssize_t>(x.rows));
    if (!y.one_d) shape.push_back(static_cast<py::ssize_t>(y.rows));
    try {
        py::array_t<float> out(shape);
        if (!lean_scan(table, metric, q, rows, threads, out.mutable_data())) Py_RETURN_NONE;
        return out.release().ptr();
    } catch (...) {
        return lean_error();
    }
}

constexpr std::size_t kLeanKnnMaxRows = std::size_t{1} << 22;  // the (n,) distances stay small

// knn_lean(query, data, k, metric, threads) -> (distances, ids) for one query (1-D or (1, d))
// over the rows of data: one pass over the rows into (n,) distances, then the top k
// (ascending, ties by row, +inf / -1 padded); or None for the general path.
PyObject* knn_lean(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "knn_lean(query, data, k, metric, threads) takes 5 arguments");
        return nullptr;
    }
    const LeanMetric metric = lean_metric(args[3]);
    Operand q, rows;
    const char type = metric == LeanMetric::hamming ? 'B' : 'f';
    const long threads = lean_threads(args[4]);
    if (metric == LeanMetric::none || threads < 0 || !PyLong_Check(args[2]) ||
        !plain_operand(args[0], type, q) || !plain_operand(args[1], type, rows) || q.rows != 1 ||
        rows.one_d || q.cols != rows.cols || rows.rows > kLeanKnnMaxRows)
        Py_RETURN_NONE;
    const long k = PyLong_AsLong(args[2]);
    if (k < 1) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    try {
        std::vector<float> distances(rows.rows);
        if (!lean_scan(active_kernels(), metric, q, rows, threads, distances.data())) Py_RETURN_NONE;
        std::vector<py::ssize_t> shape;
        if (!q.one_d) shape.push_back(1);
        shape.push_back(static_cast<py::ssize_t>(k));
        py::array_t<float> out_d(shape);
        py::array_t<std::int64_t> out_i(shape);
        TopK heap(static_cast<std::size_t>(k));
        heap.push_range(distances.data(), distances.size(), 0);
        heap.write_sorted(out_d.mutable_data(), out_i.mutable_data());
        return py::make_tuple(out_d, out_i).release().ptr();
    } catch (...) {
        return lean_error();
    }
}

PyMethodDef kKnnLean = {"knn_lean", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(knn_lean)),
                         METH_FASTCALL,
                         "knn_lean(query, data, k, metric, threads): sx.knn for one query "
                         "(float32 or uint8 C-contiguous), or None"};

PyMethodDef kDistancesLean = {"distances_lean", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(distances_lean)),
                              METH_FASTCALL,
                              "distances_lean(x, y, metric, threads): sx.distances for one vector "
                              "against one or many (float32 or uint8 C-contiguous), or None"};

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("detected_level", [] { return std::string(level_name(detected_level())); });
    m.def("active_level", [] { return std::string(level_name(active_level())); });
    m.def("set_active_level", [](const std::string& name) { set_active_level(parse_level(name)); });
    m.def("cpu_features", &cpu_features);
    m.add_object("distances_lean", py::reinterpret_steal<py::object>(PyCFunction_New(&kDistancesLean, nullptr)));
    m.add_object("knn_lean", py::reinterpret_steal<py::object>(PyCFunction_New(&kKnnLean, nullptr)));
    m.def("tiers", [] {
        py::list out;
        for (const TierInfo& t : tier_table())
            out.append(py::make_tuple(t.name, std::string(level_name(t.parent)), t.features, t.built));
        return out;
    }, "Every CPU tier: (name, parent, required features, compiled in this build), lowest first");
    m.def("select_tier", [](const std::set<std::string>& features) {
        return std::string(level_name(select_tier(features)));
    }, py::arg("features"), "The tier a CPU with these features runs (pure; any architecture)");
    m.def("missing_features", [](const std::string& tier, const std::set<std::string>& features) {
        return missing_features(parse_level(tier), features);
    }, py::arg("tier"), py::arg("features"), "Features of `tier` that `features` lacks");
    m.def("env_warning", &env_warning);
    m.def("available_cores", &available_cores);
    m.def("pair_distances", &pair_distances, py::arg("data"), py::arg("n"), py::arg("queries"),
          py::arg("nq"), py::arg("storage"), py::arg("metric"), py::arg("dim"),
          py::arg("lo") = py::none(), py::arg("scale") = py::none());
    m.def("pairwise", &pairwise, py::arg("data"), py::arg("n"), py::arg("queries"), py::arg("nq"),
          py::arg("storage"), py::arg("metric"), py::arg("dim"), py::arg("lo") = py::none(),
          py::arg("scale") = py::none(), py::arg("threads") = py::none());
    m.def("search", &search, py::arg("data"), py::arg("n"), py::arg("queries"), py::arg("nq"),
          py::arg("k"), py::arg("storage"), py::arg("metric"), py::arg("dim"),
          py::arg("lo") = py::none(), py::arg("scale") = py::none(), py::arg("mask") = py::none(),
          py::arg("threads") = py::none());
    m.def("all_finite", &all_finite, py::arg("values"),
          py::arg("limit") = std::numeric_limits<float>::infinity());
    m.def(
        "select_smallest",
        [](const py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>& keys, std::size_t k) {
            if (keys.ndim() != 1)
                throw std::invalid_argument("keys: expected a 1-d uint64 array, got " + std::to_string(keys.ndim()) +
                                            " dimensions");
            const std::size_t n = static_cast<std::size_t>(keys.shape(0));
            if (k > n) throw std::invalid_argument("k must be <= len(keys) = " + std::to_string(n) + ", got " + std::to_string(k));
            py::array_t<std::uint64_t> out(static_cast<py::ssize_t>(n));
            std::copy(keys.data(), keys.data() + n, out.mutable_data());
            select_smallest(out.mutable_data(), n, k);
            return out;
        },
        py::arg("keys"), py::arg("k"),
        "keys rearranged so the first k are the k smallest (select_smallest, the IVF probe choice)");
    m.def("rabitq_tables", &rabitq_tables_py, py::arg("v"),
          "RaBitQ query fast-scan tables at the active tier: (lut, scale, bias, smax)");
    m.def("inner_products", &inner_products_py, py::arg("rows"), py::arg("n"), py::arg("queries"),
          py::arg("nq"), py::arg("dim"), py::arg("threads") = py::none());
    m.def("inner_products_prepacked", &inner_products_prepacked_py, py::arg("rows"), py::arg("n"),
          py::arg("queries"), py::arg("nq"), py::arg("dim"), py::arg("pack_level"),
          py::arg("threads") = py::none());
}

}  // namespace simdex
