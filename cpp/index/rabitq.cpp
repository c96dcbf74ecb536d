// RaBitQ quantizer: rotation, encoding, query preparation, estimates (see rabitq.hpp).
#include "index/rabitq.hpp"

#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace simdex {

// Eight levels at a time: bit k of each byte of a little-endian word gathered into one byte
// by a multiply (byte j of ((w >> k) & 0x01..01) * 0x0102040810204080 lands in bit 56 + j).
void level_planes(const std::uint8_t* levels, std::size_t D, int bits, std::uint64_t* planes) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "levels are read as little-endian words");
    const std::size_t words = D / 64;
    for (std::size_t k = 0; k < static_cast<std::size_t>(bits); ++k)
        for (std::size_t w = 0; w < words; ++w) {
            std::uint64_t plane = 0;
            for (std::size_t byte = 0; byte < 8; ++byte) {
                std::uint64_t eight;
                std::memcpy(&eight, levels + w * 64 + byte * 8, 8);
                plane |= ((((eight >> k) & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56) << (8 * byte);
            }
            planes[k * words + w] = plane;
        }
}

namespace {

// Error at eps0 = 1 of an estimate with level factors (scale, err): the code's error
// m * err * ||q|| and the query rounding's, m * scale * ||xbar|| * delta / sqrt(12)
// (scale * ||xbar|| = norm / cos, 1 / cos = sqrt(1 + (err sqrt(D - 1) / norm)^2)), added in
// quadrature (independent, both close to normal).
inline float combined_error(double m, double norm2, double err, const RaBitQQuery& q, double rd) {
    const double code = err * q.norm;
    const double query = std::sqrt(norm2 + err * err * rd * rd) * q.delta / std::sqrt(12.0);
    return static_cast<float>(m * std::sqrt(code * code + query * query));
}

}  // namespace

Rotation::Rotation(Kind kind, std::size_t dim, const float* params)
    : kind_(kind), dim_(dim), padded_(rabitq_padded_dim(dim)) {
    if (dim == 0) throw std::invalid_argument("RaBitQ rotation: dim must be >= 1");
    half_ = 1;
    while (half_ * 2 <= padded_) half_ *= 2;
    std::size_t count = kind == Kind::hadamard ? kRounds * padded_ : padded_ * padded_;
    params_.assign(params, params + count);
    for (float v : params_) {
        if (!std::isfinite(v) || (kind == Kind::hadamard && v != 1.0f && v != -1.0f))
            throw std::invalid_argument(kind == Kind::hadamard
                                            ? "RaBitQ rotation: Hadamard signs must be +1 or -1"
                                            : "RaBitQ rotation: the dense matrix must be finite");
    }
}

void Rotation::apply(const KernelTable& kernels, const float* x, double* out) const {
    const std::size_t D = padded_;
    if (kind_ == Kind::dense) {
        for (std::size_t i = 0; i < D; ++i) {
            const float* m = params_.data() + i * D;
            double s = 0;
            for (std::size_t j = 0; j < dim_; ++j) s += static_cast<double>(m[j]) * x[j];
            out[i] = s;
        }
        return;
    }
    for (std::size_t j = 0; j < dim_; ++j) out[j] = x[j];
    for (std::size_t j = dim_; j < D; ++j) out[j] = 0;
    for (std::size_t r = 0; r < kRounds; ++r) {
        const float* s = params_.data() + r * D;
        const std::size_t begin = (r & 1) ? D - half_ : 0;  // the transformed window [begin, begin + h)
        for (std::size_t j = 0; j < begin; ++j) out[j] *= s[j];
        for (std::size_t j = begin + half_; j < D; ++j) out[j] *= s[j];
        kernels.fwht_f64(out + begin, s + begin, half_);  // signs the window, then transforms it
    }
}

void Rotation::invert(const KernelTable& kernels, const double* y, double* out) const {
    const std::size_t D = padded_;
    if (kind_ == Kind::dense) {
        for (std::size_t j = 0; j < dim_; ++j) out[j] = 0;
        for (std::size_t i = 0; i < D; ++i) {
            const float* m = params_.data() + i * D;
            for (std::size_t j = 0; j < dim_; ++j) out[j] += static_cast<double>(m[j]) * y[i];
        }
        return;
    }
    std::vector<double> t(y, y + D);
    for (std::size_t r = kRounds; r-- > 0;) {
        kernels.fwht_f64(t.data() + ((r & 1) ? D - half_ : 0), nullptr, half_);  // H is its own inverse
        const float* s = params_.data() + r * D;
        for (std::size_t j = 0; j < D; ++j) t[j] *= s[j];
    }
    for (std::size_t j = 0; j < dim_; ++j) out[j] = t[j];
}

RaBitQ::RaBitQ(std::size_t dim, int bits, int query_bits, const Rotation& rotation)
    : dim_(dim), padded_(rabitq_padded_dim(dim)), bits_(bits), query_bits_(query_bits), rotation_(rotation) {
    if (bits < 1 || bits > 8) throw std::invalid_argument("RaBitQ: bits must be in 1..8; got " + std::to_string(bits));
    if (query_bits < 1 || query_bits > 8)
        throw std::invalid_argument("RaBitQ: query_bits must be in 1..8; got " + std::to_string(query_bits));
    if (rotation.dim() != dim) throw std::invalid_argument("RaBitQ: the rotation's dim differs from dim");
}

void RaBitQ::encode(const KernelTable& kernels, const float* x, const float* centre, std::uint8_t* row) const {
    std::vector<float> r(x, x + dim_);
    if (centre)
        for (std::size_t j = 0; j < dim_; ++j) r[j] = x[j] - centre[j];
    std::vector<double> y(padded_);
    rotation_.apply(kernels, r.data(), y.data());
    encode_rotated(y.data(), row);
}

void RaBitQ::encode_rotated(const double* y, std::uint8_t* row) const {
    const std::size_t D = padded_;
    double norm2 = 0;
    for (std::size_t i = 0; i < D; ++i) norm2 += y[i] * y[i];
    const double norm = std::sqrt(norm2);
    std::memset(row, 0, code_bytes());
    float* factors = reinterpret_cast<float*>(row + code_bytes());
    float f[5] = {static_cast<float>(norm2), 0, 0, 0, 0};
    if (norm == 0) {  // the centre itself: every estimate is exact with scale 0
        std::memcpy(factors, f, 4 * factor_count());
        return;
    }
    std::vector<double> magnitude(D);
    double max_magnitude = 0, sum_magnitude = 0;
    for (std::size_t i = 0; i < D; ++i) {
        magnitude[i] = std::fabs(y[i]) / norm;
        max_magnitude = std::max(max_magnitude, magnitude[i]);
        sum_magnitude += magnitude[i];
        if (y[i] > 0) row[i >> 3] |= static_cast<std::uint8_t>(1u << (i & 7));
    }
    const double rd = std::sqrt(static_cast<double>(D) - 1.0);
    // level factors from <xbar, o> and ||xbar||^2
    auto level = [&](double ip, double xx, float* out) {
        const double cos = ip / std::sqrt(xx);
        out[0] = static_cast<float>(norm / ip);
        out[1] = static_cast<float>(norm * std::sqrt(std::max(0.0, 1.0 - cos * cos)) / (cos * rd));
    };
    level(0.5 * sum_magnitude, 0.25 * static_cast<double>(D), f + 1);
    if (bits_ > 1) {
        const int top = (1 << (bits_ - 1)) - 1;  // highest magnitude level
        // cosine of the code vector for scale t: a_i = min(floor(t |o_i|), top)
        auto cosine = [&](double t, double* ip_out, double* xx_out) {
            double ip = 0, xx = 0;
            for (std::size_t i = 0; i < D; ++i) {
                const double a = std::min(std::floor(t * magnitude[i]), static_cast<double>(top)) + 0.5;
                ip += a * magnitude[i];
                xx += a * a;
            }
            if (ip_out) *ip_out = ip, *xx_out = xx;
            return ip / std::sqrt(xx);
        };
        // stage 1: 48 scales log-spaced over [0.4, 2.5] x t_top (t_top puts the largest
        // coordinate at the top level's lower edge); stage 2: 16 between the best's neighbours
        const double t_top = static_cast<double>(top + 1) / max_magnitude;
        constexpr int kCoarse = 48, kFine = 16;
        auto coarse = [&](int k) { return t_top * 0.4 * std::pow(2.5 / 0.4, k / double(kCoarse - 1)); };
        int best_k = 0;
        double best_t = coarse(0), best_cos = cosine(best_t, nullptr, nullptr);
        for (int k = 1; k < kCoarse; ++k) {
            const double c = cosine(coarse(k), nullptr, nullptr);
            if (c > best_cos) best_cos = c, best_t = coarse(k), best_k = k;
        }
        const double lo = coarse(std::max(best_k - 1, 0)), hi = coarse(std::min(best_k + 1, kCoarse - 1));
        for (int k = 0; k <= kFine; ++k) {
            const double t = lo + (hi - lo) * k / kFine;
            const double c = cosine(t, nullptr, nullptr);
            if (c > best_cos) best_cos = c, best_t = t;
        }
        double ip, xx;
        cosine(best_t, &ip, &xx);
        level(ip, xx, f + 3);
        // planes 1.. : bits of e_i = b_i ? a_i : top - a_i
        for (std::size_t i = 0; i < D; ++i) {
            const int a = static_cast<int>(std::min(std::floor(best_t * magnitude[i]), static_cast<double>(top)));
            const int e = y[i] > 0 ? a : top - a;
            for (int j = 0; j + 1 < bits_; ++j)
                if ((e >> j) & 1) row[(1 + j) * plane_bytes() + (i >> 3)] |= static_cast<std::uint8_t>(1u << (i & 7));
        }
    }
    std::memcpy(factors, f, 4 * factor_count());
}

void RaBitQ::decode(const KernelTable& kernels, const std::uint8_t* row, const float* centre, float* out) const {
    const std::size_t D = padded_;
    const double half = (std::pow(2.0, bits_) - 1.0) / 2.0;
    std::vector<double> xbar(D), back(dim_);
    double xx = 0;
    for (std::size_t i = 0; i < D; ++i) {
        int u = 0;
        for (int j = 0; j < bits_; ++j) u |= ((row[j * plane_bytes() + (i >> 3)] >> (i & 7)) & 1) << j;
        // plane 0 is the top bit of u, planes 1.. its low bits
        const int code = ((u & 1) << (bits_ - 1)) | (u >> 1);
        xbar[i] = code - half;
        xx += xbar[i] * xbar[i];
    }
    float f[5];
    factors_of(row, f);
    const double scale = std::sqrt(static_cast<double>(f[0]) / xx);
    for (std::size_t i = 0; i < D; ++i) xbar[i] *= scale;
    rotation_.invert(kernels, xbar.data(), back.data());
    for (std::size_t j = 0; j < dim_; ++j) out[j] = static_cast<float>(back[j] + (centre ? centre[j] : 0.0f));
}

void RaBitQ::prepare(const KernelTable& kernels, const float* q, const float* centre, Metric metric,
                     RaBitQQuery& out) const {
    const bool l2 = metric == Metric::l2;
    std::vector<float> shifted(q, q + dim_);
    double constant = 1.0;
    if (l2 && centre) {
        for (std::size_t j = 0; j < dim_; ++j) shifted[j] = q[j] - centre[j];
    } else if (centre) {
        for (std::size_t j = 0; j < dim_; ++j) constant -= static_cast<double>(centre[j]) * q[j];
    }
    std::vector<double> y(padded_);
    rotation_.apply(kernels, shifted.data(), y.data());
    if (l2) {
        constant = 0;
        for (double v : y) constant += v * v;
    }
    prepare_rotated(y.data(), nullptr, constant, l2, out);
}

void RaBitQ::prepare_rotated(const double* rotated_query, const double* rotated_centre, double constant,
                             bool l2, RaBitQQuery& out, bool planes) const {
    const std::size_t D = padded_, W = words();
    out.l2 = l2;
    out.constant = constant;
    out.rotated.resize(D);
    double* v = out.rotated.data();
    if (rotated_centre) {
        for (std::size_t i = 0; i < D; ++i) v[i] = rotated_query[i] - rotated_centre[i];
    } else {
        std::copy(rotated_query, rotated_query + D, v);
    }
    double norm2 = 0;  // in index order (one chain: the same sum on every CPU)
    for (std::size_t i = 0; i < D; ++i) norm2 += v[i] * v[i];
    out.norm = std::sqrt(norm2);
    if (!planes) return;
    double lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0; i < D; ++i) {
        lo = std::min(lo, v[i]);
        hi = std::max(hi, v[i]);
    }
    const double levels = std::pow(2.0, query_bits_) - 1.0;
    out.lo = lo;
    out.delta = hi > lo ? (hi - lo) / levels : 0.0;
    std::vector<std::uint8_t> quantised(D);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < D; ++i) {
        const std::uint64_t level =
            out.delta > 0 ? static_cast<std::uint64_t>(std::min(levels, std::nearbyint((out.rotated[i] - lo) / out.delta))) : 0;
        total += level;
        quantised[i] = static_cast<std::uint8_t>(level);  // query_bits <= 8
    }
    out.planes.resize(static_cast<std::size_t>(query_bits_) * W);
    level_planes(quantised.data(), D, query_bits_, out.planes.data());
    out.sum = static_cast<double>(D) * lo + out.delta * static_cast<double>(total);
}



void RaBitQ::factors_of(const std::uint8_t* row, float* out) const {
    std::memcpy(out, row + code_bytes(), 4 * factor_count());
}

// <plane, quantised q> = lo * popcount(plane) + delta * sum_k 2^k popcount(plane & qplane_k)
double RaBitQ::plane_product(const RaBitQQuery& q, const std::uint8_t* bytes) const {
    std::uint64_t count, dot;
    plane_counts(bytes, q.planes.data(), words(), query_bits_, count, dot);
    return q.lo * static_cast<double>(count) + q.delta * static_cast<double>(dot);
}

RaBitQEstimate RaBitQ::estimate_1bit(const RaBitQQuery& q, const std::uint8_t* row) const {
    float f[5];
    factors_of(row, f);
    const double ip = plane_product(q, row) - 0.5 * q.sum;  // <b - 1/2, q>
    const double m = q.l2 ? 2.0 : 1.0;
    const double base = q.l2 ? static_cast<double>(f[0]) + q.constant : q.constant;
    return {static_cast<float>(base - m * f[1] * ip), combined_error(m, f[0], f[2], q, std::sqrt(double(padded_) - 1.0))};
}

RaBitQEstimate RaBitQ::estimate_parts(const RaBitQQuery& q, const std::uint8_t* sign, const std::uint8_t* ex,
                                      const float* f) const {
    // sum_i u_i q_i = 2^(B-1) <b, q> + sum_j 2^j <e_j, q>;  <xbar, q> = that - (2^B - 1) / 2 sum q
    double total = std::ldexp(plane_product(q, sign), bits_ - 1);
    for (int j = 0; j + 1 < bits_; ++j) total += std::ldexp(plane_product(q, ex + j * plane_bytes()), j);
    const double ip = total - (std::ldexp(1.0, bits_) - 1.0) / 2.0 * q.sum;
    const double m = q.l2 ? 2.0 : 1.0;
    const double base = q.l2 ? static_cast<double>(f[0]) + q.constant : q.constant;
    const int level = bits_ == 1 ? 1 : 3;
    return {static_cast<float>(base - m * f[level] * ip),
            combined_error(m, f[0], f[level + 1], q, std::sqrt(double(padded_) - 1.0))};
}

float RaBitQ::distance_1bit(const RaBitQQuery& q, const std::uint8_t* row) const {
    float f[5];
    factors_of(row, f);
    const double ip = plane_product(q, row) - 0.5 * q.sum;
    return q.l2 ? static_cast<float>(f[0] + q.constant - 2.0 * f[1] * ip)
                : static_cast<float>(q.constant - f[1] * ip);
}

float RaBitQ::distance_1bit_parts(const RaBitQQuery& q, double dot, double count, float norm2, float scale) const {
    const double ip = q.lo * count + q.delta * dot - 0.5 * q.sum;  // plane_product's sum, then <b - 1/2, q>
    return q.l2 ? static_cast<float>(norm2 + q.constant - 2.0 * scale * ip)
                : static_cast<float>(q.constant - scale * ip);
}

float RaBitQ::distance(const RaBitQQuery& q, const std::uint8_t* row) const {
    if (bits_ == 1) return distance_1bit(q, row);
    float f[5];
    factors_of(row, f);
    double total = std::ldexp(plane_product(q, row), bits_ - 1);
    for (int j = 0; j + 1 < bits_; ++j) total += std::ldexp(plane_product(q, row + (1 + j) * plane_bytes()), j);
    const double ip = total - (std::ldexp(1.0, bits_) - 1.0) / 2.0 * q.sum;
    return q.l2 ? static_cast<float>(f[0] + q.constant - 2.0 * f[3] * ip)
                : static_cast<float>(q.constant - f[3] * ip);
}

RaBitQEstimate RaBitQ::estimate(const RaBitQQuery& q, const std::uint8_t* row) const {
    float f[5];
    factors_of(row, f);
    return estimate_parts(q, row, row + plane_bytes(), f);
}

void RaBitQ::estimate_rows(const RaBitQQuery& q, const std::uint8_t* rows, std::size_t n, float* distances,
                           float* errors) const {
    const std::size_t rb = row_bytes();
    for (std::size_t i = 0; i < n; ++i) {
        RaBitQEstimate e = estimate(q, rows + i * rb);
        if (distances) distances[i] = e.distance;
        if (errors) errors[i] = e.error;
    }
}

}  // namespace simdex
