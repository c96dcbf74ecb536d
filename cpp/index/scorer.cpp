#include "index/scorer.hpp"

#include <algorithm>
#include <cmath>
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

Scorer::Scorer(const KernelTable& table, const StoreSpec& spec) : spec_(spec), table_(&table) {
    if ((spec.storage == Storage::bits) != (spec.metric == Metric::hamming))
        throw std::invalid_argument("metric 'hamming' goes with bit codes and only with them");
    l2_ = spec.metric == Metric::l2;
    switch (spec.storage) {
        case Storage::f32: f32_ = l2_ ? table.l2_f32 : table.dot_f32; break;
        case Storage::f16: h16_ = l2_ ? table.l2_f16 : table.dot_f16; break;
        case Storage::bf16: h16_ = l2_ ? table.l2_bf16 : table.dot_bf16; break;
        case Storage::u8:
            u8_dot_ = table.dot_u8;
            u8_l2_ = table.l2_u8;
            s8u8_ = table.dot_s8u8;
            break;
        case Storage::bits: hamming_ = table.hamming; break;
    }
}

void Scorer::set_int8_queries(bool on) {
    if (on && (spec_.storage != Storage::u8 || l2_))
        throw std::invalid_argument("int8 queries need int8 storage and metric 'ip' or 'cosine'");
    int8_queries_ = on;
}

PreparedQuery Scorer::prepare(const void* query, std::vector<float>& buffer) const {
    PreparedQuery q;
    if (spec_.storage != Storage::u8) {
        q.data = query;
        return q;
    }
    const float* x = static_cast<const float*>(query);
    const std::size_t d = spec_.dim;
    buffer.resize(d);
    if (l2_) {
        for (std::size_t j = 0; j < d; ++j) buffer[j] = x[j] - spec_.lo[j];
    } else {
        double offset = 0;
        for (std::size_t j = 0; j < d; ++j) {
            buffer[j] = x[j] * spec_.scale[j];
            offset += static_cast<double>(x[j]) * spec_.lo[j];
        }
        q.offset = static_cast<float>(offset);
        if (int8_queries_) {
            // symmetric rounding of the scaled query to [-127, 127], in place (int8 view)
            float top = 0;
            for (std::size_t j = 0; j < d; ++j) top = std::max(top, std::fabs(buffer[j]));
            auto* codes = reinterpret_cast<std::int8_t*>(buffer.data());
            const float inv = top > 0 ? 127.0f / top : 0.0f;
            for (std::size_t j = 0; j < d; ++j) codes[j] = static_cast<std::int8_t>(std::lrint(buffer[j] * inv));
            q.scale = top > 0 ? top / 127.0f : 1.0f;  // all-zero query: any nonzero scale
        }
    }
    q.data = buffer.data();
    return q;
}

PreparedQuery Scorer::prepare_row(const std::uint8_t* row, std::vector<float>& buffer,
                                  std::vector<float>& decoded) const {
    switch (spec_.storage) {
        case Storage::f32:
        case Storage::bits: return PreparedQuery{row, 0, 0};
        case Storage::f16:
        case Storage::bf16:
            buffer.resize(spec_.dim);
            decode_row(spec_, row, buffer.data());
            return PreparedQuery{buffer.data(), 0, 0};
        case Storage::u8:
            decoded.resize(spec_.dim);
            decode_row(spec_, row, decoded.data());
            return prepare(decoded.data(), buffer);
    }
    return PreparedQuery{};
}

void Scorer::distances(const PreparedQuery& pq, const std::uint8_t* rows, std::size_t n, float* out) const {
    const float* q = static_cast<const float*>(pq.data);
    const std::size_t d = spec_.dim;
    const KernelTable& t = *table_;
    switch (spec_.storage) {
        case Storage::f32: {
            const float* x = reinterpret_cast<const float*>(rows);
            l2_ ? t.l2_f32_rows(q, x, n, d, out) : t.dot_f32_rows(q, x, n, d, out);
            break;
        }
        case Storage::f16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(rows);
            l2_ ? t.l2_f16_rows(q, x, n, d, out) : t.dot_f16_rows(q, x, n, d, out);
            break;
        }
        case Storage::bf16: {
            const std::uint16_t* x = reinterpret_cast<const std::uint16_t*>(rows);
            l2_ ? t.l2_bf16_rows(q, x, n, d, out) : t.dot_bf16_rows(q, x, n, d, out);
            break;
        }
        case Storage::u8:
            if (l2_) {
                t.l2_u8_rows(q, spec_.scale, rows, n, d, out);
                return;
            }
            if (pq.scale != 0) {  // int8 queries
                for (std::size_t i = 0; i < n; ++i) out[i] = distance(pq, rows + i * spec_.row_bytes);
                return;
            }
            t.dot_u8_rows(q, rows, n, d, out);
            for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f - (pq.offset + out[i]);
            return;
        case Storage::bits:
            for (std::size_t i = 0; i < n; ++i) out[i] = distance(pq, rows + i * spec_.row_bytes);
            return;
    }
    if (!l2_)
        for (std::size_t i = 0; i < n; ++i) out[i] = 1.0f - out[i];
}

}  // namespace simdex
