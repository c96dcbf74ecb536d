// Bindings for RaBitQ: simdex._core.RaBitQCore (the quantizer, python/simdex/rabitq.py's
// RaBitQ) and RaBitQIndexCore (flat and IVF RaBitQ indexes). Python validates every argument;
// here only cheap re-checks. Work runs with the GIL released.
#include <cstring>
#include <memory>
#include <string>

#include "bindings_common.hpp"
#include "index/rabitq.hpp"

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
        py::array_t<std::uint8_t> rows({n, q_.row_bytes()});
        std::uint8_t* out = rows.mutable_data();
        py::gil_scoped_release release;
        const std::size_t chunk = 256;
        parallel_for((n + chunk - 1) / chunk, t, [&](std::size_t task, std::size_t) {
            for (std::size_t i = task * chunk; i < std::min(n, (task + 1) * chunk); ++i)
                q_.encode(xp + i * q_.dim(), c, out + i * q_.row_bytes());
        });
        return rows;
    }

    FloatArray decode(const py::array& rows, std::size_t n, const py::object& centre) {
        const std::uint8_t* r = array_bytes(rows, n * q_.row_bytes(), 1, "codes");
        const float* c = optional_centre(centre, q_.dim());
        FloatArray out({n, q_.dim()});
        float* o = out.mutable_data();
        py::gil_scoped_release release;
        for (std::size_t i = 0; i < n; ++i) q_.decode(r + i * q_.row_bytes(), c, o + i * q_.dim());
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
        FloatArray dist({nq, n}), err({nq, n});
        float* d = dist.mutable_data();
        float* e = err.mutable_data();
        {
            py::gil_scoped_release release;
            RaBitQQuery prepared;
            for (std::size_t i = 0; i < nq; ++i) {
                q_.prepare(qp + i * q_.dim(), c, m, prepared);
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
        for (std::size_t i = 0; i < n; ++i) q_.rotation().apply(xp + i * q_.dim(), out.mutable_data() + i * q_.padded_dim());
        return out;
    }

    std::size_t row_bytes() const { return q_.row_bytes(); }
    std::size_t code_bytes() const { return q_.code_bytes(); }
    std::size_t padded_dim() const { return q_.padded_dim(); }

   private:
    RaBitQ q_;
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
}

}  // namespace simdex
