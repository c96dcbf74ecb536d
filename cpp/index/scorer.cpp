#include "index/scorer.hpp"

#include <cstring>
#include <stdexcept>

namespace simdex {
namespace {

float half_to_float(std::uint16_t h) {
    std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {
        float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
        std::memcpy(&bits, &magnitude, 4);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

bool is_dot(Metric metric) { return metric == Metric::ip || metric == Metric::cosine; }

}  // namespace

std::size_t row_bytes_for(Storage storage, std::size_t dim) {
    switch (storage) {
        case Storage::f32: return dim * 4;
        case Storage::f16:
        case Storage::bf16: return dim * 2;
        case Storage::u8: return dim;
        case Storage::bits: return (dim + 7) / 8;
    }
    throw std::invalid_argument("unknown storage");
}

std::size_t query_bytes(const StoreSpec& spec) {
    return spec.storage == Storage::bits ? spec.row_bytes : spec.dim * sizeof(float);
}

void decode_row(const StoreSpec& spec, const std::uint8_t* row, float* out) {
    std::size_t d = spec.dim;
    switch (spec.storage) {
        case Storage::f32: std::memcpy(out, row, d * 4); return;
        case Storage::f16: {
            for (std::size_t j = 0; j < d; ++j) {
                std::uint16_t h;
                std::memcpy(&h, row + 2 * j, 2);
                out[j] = half_to_float(h);
            }
            return;
        }
        case Storage::bf16: {
            for (std::size_t j = 0; j < d; ++j) {
                std::uint16_t h;
                std::memcpy(&h, row + 2 * j, 2);
                std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
                std::memcpy(out + j, &bits, 4);
            }
            return;
        }
        case Storage::u8:
            for (std::size_t j = 0; j < d; ++j) out[j] = spec.lo[j] + spec.scale[j] * row[j];
            return;
        case Storage::bits: throw std::invalid_argument("decode_row: bit codes have no float form");
    }
}

QueryScorer::QueryScorer(const KernelTable& table, const StoreSpec& spec)
    : spec_(spec), table_(&table) {
    if ((spec.storage == Storage::bits) != (spec.metric == Metric::hamming))
        throw std::invalid_argument("metric 'hamming' goes with bit codes and only with them");
    if (spec.storage == Storage::u8) buffer_.resize(spec.dim);
    if (spec.storage == Storage::bits) code_.resize(spec.row_bytes);
}

void QueryScorer::set_query(const void* query) {
    if (spec_.storage != Storage::u8) {
        query_ = query;
        return;
    }
    const float* q = static_cast<const float*>(query);
    float* prepared = buffer_.data();
    if (is_dot(spec_.metric)) {
        double offset = 0;
        for (std::size_t j = 0; j < spec_.dim; ++j) {
            prepared[j] = q[j] * spec_.scale[j];
            offset += static_cast<double>(q[j]) * spec_.lo[j];
        }
        offset_ = static_cast<float>(offset);
    } else {
        for (std::size_t j = 0; j < spec_.dim; ++j) prepared[j] = q[j] - spec_.lo[j];
    }
    query_ = prepared;
}

void QueryScorer::set_query_from_row(const std::uint8_t* row) {
    if (spec_.storage == Storage::bits) {
        std::memcpy(code_.data(), row, spec_.row_bytes);
        query_ = code_.data();
        return;
    }
    std::vector<float> decoded(spec_.dim);
    decode_row(spec_, row, decoded.data());
    if (spec_.storage == Storage::u8) {
        set_query(decoded.data());  // prepared into buffer_, decoded not referenced after
        return;
    }
    buffer_ = std::move(decoded);  // f16/bf16/f32 kernels take a float32 query
    query_ = buffer_.data();
}

float QueryScorer::distance(const std::uint8_t* row) const {
    const float* q = static_cast<const float*>(query_);
    std::size_t d = spec_.dim;
    const KernelTable& t = *table_;
    switch (spec_.storage) {
        case Storage::f32: {
            const float* x = reinterpret_cast<const float*>(row);
            return spec_.metric == Metric::l2 ? t.l2_f32(q, x, d) : 1.0f - t.dot_f32(q, x, d);
        }
        case Storage::f16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(row);
            return spec_.metric == Metric::l2 ? t.l2_f16(q, x, d) : 1.0f - t.dot_f16(q, x, d);
        }
        case Storage::bf16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(row);
            return spec_.metric == Metric::l2 ? t.l2_bf16(q, x, d) : 1.0f - t.dot_bf16(q, x, d);
        }
        case Storage::u8:
            return spec_.metric == Metric::l2 ? t.l2_u8(q, spec_.scale, row, d)
                                              : 1.0f - (offset_ + t.dot_u8(q, row, d));
        case Storage::bits:
            return static_cast<float>(
                t.hamming(static_cast<const std::uint8_t*>(query_), row, spec_.row_bytes));
    }
    return 0;
}

void QueryScorer::distances(const std::uint8_t* rows, std::size_t n, float* out) const {
    const float* q = static_cast<const float*>(query_);
    std::size_t d = spec_.dim;
    const KernelTable& t = *table_;
    bool l2 = spec_.metric == Metric::l2;
    switch (spec_.storage) {
        case Storage::f32: {
            const float* x = reinterpret_cast<const float*>(rows);
            l2 ? t.l2_f32_rows(q, x, n, d, out) : t.dot_f32_rows(q, x, n, d, out);
            break;
        }
        case Storage::f16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(rows);
            l2 ? t.l2_f16_rows(q, x, n, d, out) : t.dot_f16_rows(q, x, n, d, out);
            break;
        }
        case Storage::bf16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(rows);
            l2 ? t.l2_bf16_rows(q, x, n, d, out) : t.dot_bf16_rows(q, x, n, d, out);
            break;
        }
        case Storage::u8:
            if (l2) {
                t.l2_u8_rows(q, spec_.scale, rows, n, d, out);
                return;
            }
            t.dot_u8_rows(q, rows, n, d, out);
            for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f - (offset_ + out[i]);
            return;
        case Storage::bits:
            for (std::size_t i = 0; i < n; ++i)
                out[i] = static_cast<float>(t.hamming(static_cast<const std::uint8_t*>(query_),
                                                      rows + i * spec_.row_bytes, spec_.row_bytes));
            return;
    }
    if (!l2)
        for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f - out[i];
}

}  // namespace simdex
