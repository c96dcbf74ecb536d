// Product-quantization search orchestration (see pq.hpp).
#include "index/pq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "index/exact.hpp"
#include "index/topk.hpp"
#include "parallel.hpp"

namespace simdex {
namespace {

constexpr std::size_t kAdcChunkRows = 1024;      // rows scored per adc_u8 call
constexpr std::size_t kAdcGroupQueries = 8;      // queries sharing one pass over a chunk
constexpr std::size_t kScanGroupQueries = 16;    // fast-scan queries per task
constexpr std::size_t kScanChunkBytes = 128 * 1024;  // fast-scan codes per pass (stays in L2)

// How to cut (query groups) x (row ranges) into tasks: with fewer groups than threads the
// rows are split too, and the partial top-k lists merged afterwards.
std::size_t split_count(std::size_t groups, std::size_t threads, std::size_t units,
                        std::size_t min_units) {
    if (groups >= threads || units < 2 * min_units) return 1;
    std::size_t wanted = (2 * threads + groups - 1) / groups;
    return std::max<std::size_t>(1, std::min(wanted, units / min_units));
}

// Partial results of every split, merged per query.
void merge_splits(const std::vector<float>& distances, const std::vector<std::int64_t>& slots,
                  std::size_t splits, std::size_t nq, std::size_t k, PqSearchOutput out) {
    for (std::size_t q = 0; q < nq; ++q) {
        TopK heap(k);
        for (std::size_t s = 0; s < splits; ++s) {
            const std::size_t base = (s * nq + q) * k;
            for (std::size_t i = 0; i < k; ++i)
                if (slots[base + i] >= 0) heap.push(distances[base + i], slots[base + i]);
        }
        heap.write_sorted(out.distances + q * k, out.slots + q * k);
    }
}

std::uint16_t threshold_u16(float limit, float bias, float scale) {
    const float x = (limit - bias) * scale;
    if (!(x < 65535.0f)) return 65535;  // +inf (heap not full) and NaN-free large values
    if (x <= 0.0f) return 0;
    return static_cast<std::uint16_t>(x);  // floor: every sum with sum / s + b < limit passes
}

struct FastScanQuery {
    TopK* heap;
    float scale;
    float inverse_scale;
    float bias;
};

// What the fast-scan emit callback needs to turn block rows into heap entries.
struct FastScanContext {
    FastScanQuery* queries;         // (queries in this scan,)
    std::uint16_t* thresholds;      // same
    std::size_t block_base;         // absolute block index of the scanned range's first block
    std::size_t n;                  // rows (flat) -- entries past n are padding
    const std::int64_t* entry_slots;  // IVF: slot per block entry (-1 padding); flat: null
    const std::uint8_t* mask;
};

void fastscan_emit(void* raw, std::size_t query, std::size_t block, std::uint32_t bits,
                   const std::uint16_t* sums) {
    auto* context = static_cast<FastScanContext*>(raw);
    FastScanQuery& q = context->queries[query];
    const std::size_t first = (context->block_base + block) * 32;
    while (bits) {
        const int r = __builtin_ctz(bits);
        bits &= bits - 1;
        std::int64_t slot;
        if (context->entry_slots) {
            slot = context->entry_slots[first + r];
            if (slot < 0) continue;
        } else {
            if (first + r >= context->n) continue;
            slot = static_cast<std::int64_t>(first + r);
        }
        if (context->mask && !context->mask[slot]) continue;
        q.heap->push(static_cast<float>(sums[r]) * q.inverse_scale + q.bias, slot);
    }
    context->thresholds[query] = threshold_u16(q.heap->threshold(), q.bias, q.scale);
}

void push_scored(TopK& heap, const float* distances, std::size_t count, std::size_t first_slot,
                 const std::int64_t* entry_slots, float bias, const std::uint8_t* mask) {
    float limit = heap.threshold();
    for (std::size_t i = 0; i < count; ++i) {
        const float d = distances[i] + bias;
        if (!(d < limit)) continue;
        const std::int64_t slot = entry_slots ? entry_slots[first_slot + i]
                                              : static_cast<std::int64_t>(first_slot + i);
        if (mask && !mask[slot]) continue;
        heap.push(d, slot);
        limit = heap.threshold();
    }
}

}  // namespace

void pq_tables(const PqBooks& pb, const float* queries, std::size_t nq, bool l2, std::size_t threads,
               float* out) {
    const std::size_t m = pb.m, ksub = pb.ksub, dsub = pb.dsub, dim = m * dsub;
    parallel_for(nq, nq >= 8 ? threads : 1, [&](std::size_t i, std::size_t) {
        std::vector<float> dot(ksub);
        for (std::size_t j = 0; j < m; ++j) {
            const float* q = queries + i * dim + j * dsub;
            const float* bt = pb.books_t + j * dsub * ksub;  // (dsub, ksub): centroids contiguous
            std::fill(dot.begin(), dot.end(), 0.0f);
            for (std::size_t t = 0; t < dsub; ++t) {
                const float v = q[t];
                const float* col = bt + t * ksub;
                for (std::size_t c = 0; c < ksub; ++c) dot[c] += v * col[c];
            }
            float* row = out + (i * m + j) * ksub;
            if (l2) {
                float qn = 0;
                for (std::size_t t = 0; t < dsub; ++t) qn += q[t] * q[t];
                const float* norms = pb.norms + j * ksub;
                for (std::size_t c = 0; c < ksub; ++c) row[c] = std::max(0.0f, qn - 2.0f * dot[c] + norms[c]);
            } else {
                const float one = j == 0 ? 1.0f : 0.0f;
                for (std::size_t c = 0; c < ksub; ++c) row[c] = one - dot[c];
            }
        }
    });
}

void quantize_fastscan_lut(const float* lut, std::size_t m, std::uint8_t* out, float* scale,
                           float* bias) {
    const std::size_t m4 = fastscan_m4(m);
    float largest_range = 0.0f;
    double range_sum = 0.0, bias_sum = 0.0;
    std::vector<float> low(m);
    for (std::size_t j = 0; j < m; ++j) {
        const float* row = lut + j * 16;
        float lo = row[0], hi = row[0];
        for (int c = 1; c < 16; ++c) {
            lo = std::min(lo, row[c]);
            hi = std::max(hi, row[c]);
        }
        low[j] = lo;
        bias_sum += lo;
        largest_range = std::max(largest_range, hi - lo);
        range_sum += hi - lo;
    }
    // Entries <= 255 and sums <= 65535 even after rounding every entry up by 0.5.
    double s = largest_range > 0 ? 255.0 / largest_range : 1.0;
    if (range_sum > 0) s = std::min(s, (65535.0 - 0.5 * static_cast<double>(m)) / range_sum);
    std::fill(out, out + m4 * 32, std::uint8_t{0});
    for (std::size_t j = 0; j < m; ++j) {
        // sub-space j = 4g + r: r = 0 -> offset 0, r = 2 -> 32, r = 1 -> 64, r = 3 -> 96
        const std::size_t g = j / 4, r = j % 4;
        const std::size_t offset = g * 128 + (r & 1) * 64 + (r >> 1) * 32;
        for (int c = 0; c < 16; ++c) {
            const double v = std::nearbyint((static_cast<double>(lut[j * 16 + c]) - low[j]) * s);
            const auto value = static_cast<std::uint8_t>(std::min(255.0, std::max(0.0, v)));
            out[offset + c] = value;
            out[offset + 16 + c] = value;
        }
    }
    *scale = static_cast<float>(s);
    *bias = static_cast<float>(bias_sum);
}

void pq_search_u8(const KernelTable& table, const std::uint8_t* codes, std::size_t n,
                  std::size_t m, const float* luts, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, PqSearchOutput out) {
    const std::size_t groups = (nq + kAdcGroupQueries - 1) / kAdcGroupQueries;
    const std::size_t splits = split_count(groups, threads, n, 4 * kAdcChunkRows);
    std::vector<float> part_distances(splits > 1 ? splits * nq * k : 0);
    std::vector<std::int64_t> part_slots(part_distances.size());
    const auto adc = table.pq.adc_u8;
    parallel_for(groups * splits, threads, [&](std::size_t task, std::size_t) {
        const std::size_t group = task / splits, split = task % splits;
        const std::size_t q0 = group * kAdcGroupQueries;
        const std::size_t q1 = std::min(nq, q0 + kAdcGroupQueries);
        const std::size_t row0 = n * split / splits, row1 = n * (split + 1) / splits;
        std::vector<TopK> heaps(q1 - q0, TopK(k));
        std::vector<float> scored(kAdcChunkRows);
        for (std::size_t start = row0; start < row1; start += kAdcChunkRows) {
            const std::size_t count = std::min(kAdcChunkRows, row1 - start);
            for (std::size_t q = q0; q < q1; ++q) {
                adc(luts + q * m * 256, codes + start * m, count, m, scored.data());
                push_scored(heaps[q - q0], scored.data(), count, start, nullptr, 0.0f, mask);
            }
        }
        for (std::size_t q = q0; q < q1; ++q) {
            if (splits == 1) {
                heaps[q - q0].write_sorted(out.distances + q * k, out.slots + q * k);
            } else {
                const std::size_t base = (split * nq + q) * k;
                heaps[q - q0].write_sorted(part_distances.data() + base, part_slots.data() + base);
            }
        }
    });
    if (splits > 1) merge_splits(part_distances, part_slots, splits, nq, k, out);
}

void pq_search_u4(const KernelTable& table, const std::uint8_t* blocks, std::size_t n,
                  std::size_t m, const float* luts, std::size_t nq, std::size_t k,
                  const std::uint8_t* mask, std::size_t threads, PqSearchOutput out) {
    const std::size_t m4 = fastscan_m4(m);
    const std::size_t nblocks = (n + 31) / 32;
    const std::size_t block_bytes = m4 * 16;
    const std::size_t chunk_blocks = std::max<std::size_t>(1, kScanChunkBytes / block_bytes);
    const std::size_t groups = (nq + kScanGroupQueries - 1) / kScanGroupQueries;
    const std::size_t splits = split_count(groups, threads, nblocks, 2 * chunk_blocks);
    std::vector<float> part_distances(splits > 1 ? splits * nq * k : 0);
    std::vector<std::int64_t> part_slots(part_distances.size());
    const auto scan = table.pq.fastscan_u4;
    parallel_for(groups * splits, threads, [&](std::size_t task, std::size_t) {
        const std::size_t group = task / splits, split = task % splits;
        const std::size_t q0 = group * kScanGroupQueries;
        const std::size_t count = std::min(nq, q0 + kScanGroupQueries) - q0;
        const std::size_t block0 = nblocks * split / splits;
        const std::size_t block1 = nblocks * (split + 1) / splits;
        std::vector<TopK> heaps(count, TopK(k));
        std::vector<FastScanQuery> queries(count);
        std::vector<std::uint8_t> quantized(count * m4 * 32);
        std::vector<std::uint16_t> thresholds(count, 65535);
        for (std::size_t i = 0; i < count; ++i) {
            quantize_fastscan_lut(luts + (q0 + i) * m * 16, m, quantized.data() + i * m4 * 32,
                                  &queries[i].scale, &queries[i].bias);
            queries[i].inverse_scale = 1.0f / queries[i].scale;
            queries[i].heap = &heaps[i];
        }
        FastScanContext context{queries.data(), thresholds.data(), 0, n, nullptr, mask};
        for (std::size_t start = block0; start < block1; start += chunk_blocks) {
            const std::size_t chunk = std::min(chunk_blocks, block1 - start);
            context.block_base = start;
            scan(blocks + start * block_bytes, chunk, m4, quantized.data(), count,
                 thresholds.data(), fastscan_emit, &context);
        }
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t q = q0 + i;
            if (splits == 1) {
                heaps[i].write_sorted(out.distances + q * k, out.slots + q * k);
            } else {
                const std::size_t base = (split * nq + q) * k;
                heaps[i].write_sorted(part_distances.data() + base, part_slots.data() + base);
            }
        }
    });
    if (splits > 1) merge_splits(part_distances, part_slots, splits, nq, k, out);
}

void ivf_search(const KernelTable& table, const IvfLists& lists, const float* base_luts,
                const std::int64_t* probes, const float* probe_bias, std::size_t nq,
                std::size_t nprobe, std::size_t k, const std::uint8_t* mask,
                std::size_t slot_count, std::size_t threads, PqSearchOutput out) {
    const std::size_t m = lists.m;
    const std::size_t ksub = lists.nbits == 8 ? 256 : 16;
    const std::size_t lut_floats = m * ksub;
    const std::size_t m4 = fastscan_m4(m);
    const auto adc = table.pq.adc_u8;
    const auto scan = table.pq.fastscan_u4;
    parallel_for(nq, threads, [&](std::size_t q, std::size_t) {
        TopK heap(k);
        std::vector<float> lut(lut_floats);
        std::vector<float> scored(kAdcChunkRows);
        std::vector<std::uint8_t> quantized(lists.nbits == 4 ? m4 * 32 : 0);
        const float* base = base_luts + q * lut_floats;
        for (std::size_t p = 0; p < nprobe; ++p) {
            const std::int64_t list = probes[q * nprobe + p];
            if (list < 0) continue;
            if (static_cast<std::size_t>(list) >= lists.nlist)
                throw std::invalid_argument("probe list " + std::to_string(list) + " out of range");
            const std::size_t units = lists.units[static_cast<std::size_t>(list)];
            if (units == 0) continue;
            const std::uint8_t* codes = lists.codes[static_cast<std::size_t>(list)];
            const std::int64_t* slots = lists.slots[static_cast<std::size_t>(list)];
            const float* lut_ptr = base;
            if (lists.list_tables) {
                const float* extra = lists.list_tables + static_cast<std::size_t>(list) * lut_floats;
                for (std::size_t i = 0; i < lut_floats; ++i) lut[i] = base[i] + extra[i];
                lut_ptr = lut.data();
            }
            const float bias = probe_bias[q * nprobe + p];
            if (lists.nbits == 8) {
                for (std::size_t start = 0; start < units; start += kAdcChunkRows) {
                    const std::size_t count = std::min(kAdcChunkRows, units - start);
                    adc(lut_ptr, codes + start * m, count, m, scored.data());
                    push_scored(heap, scored.data(), count, start, slots, bias, mask);
                }
            } else {
                FastScanQuery query{&heap, 0, 0, 0};
                quantize_fastscan_lut(lut_ptr, m, quantized.data(), &query.scale, &query.bias);
                query.inverse_scale = 1.0f / query.scale;
                query.bias += bias;
                std::uint16_t threshold = threshold_u16(heap.threshold(), query.bias, query.scale);
                FastScanContext context{&query, &threshold, 0, slot_count, slots, mask};
                scan(codes, units, m4, quantized.data(), 1, &threshold, fastscan_emit, &context);
            }
        }
        heap.write_sorted(out.distances + q * k, out.slots + q * k);
    });
}

void nearest_centroids(const KernelTable& table, const float* x, std::size_t n, std::size_t d,
                       const float* centroids, std::size_t k, std::size_t threads,
                       std::int64_t* labels, float* distances, bool inner_product) {
    const std::size_t k_pad = (k + 15) / 16 * 16;
    // Layout: (d, k_pad), column c = centroid c; padding columns are 0 with norm +inf.
    // The kernel minimises norms[c] + <w, c> with w = -2 x (l2: norms = ||c||^2) or w = -x
    // (inner product: norms = 0), i.e. the nearest or the largest-inner-product centroid.
    std::vector<float> transposed(d * k_pad, 0.0f);
    std::vector<float> norms(k_pad, std::numeric_limits<float>::infinity());
    for (std::size_t c = 0; c < k; ++c) {
        double norm = 0.0;
        for (std::size_t j = 0; j < d; ++j) {
            const float v = centroids[c * d + j];
            transposed[j * k_pad + c] = v;
            norm += static_cast<double>(v) * v;
        }
        norms[c] = inner_product ? 0.0f : static_cast<float>(norm);
    }
    const float weight = inner_product ? -1.0f : -2.0f;
    constexpr std::size_t kTileBytes = 192 * 1024;
    const std::size_t tile = std::min(k_pad, std::max<std::size_t>(16, kTileBytes / (4 * std::max<std::size_t>(d, 1)) / 16 * 16));
    constexpr std::size_t kRows = 256;
    const std::size_t chunks = (n + kRows - 1) / kRows;
    const auto nearest = table.pq.nearest_f32;
    parallel_for(chunks, threads, [&](std::size_t chunk, std::size_t) {
        const std::size_t row0 = chunk * kRows, rows = std::min(kRows, n - row0);
        std::vector<float> scaled(rows * d);  // w: the kernels broadcast it from memory
        for (std::size_t i = 0; i < rows * d; ++i) scaled[i] = weight * x[row0 * d + i];
        float* best = distances + row0;
        std::fill(best, best + rows, std::numeric_limits<float>::infinity());
        std::fill(labels + row0, labels + row0 + rows, std::int64_t{0});
        for (std::size_t c0 = 0; c0 < k_pad; c0 += tile) {
            const std::size_t count = std::min(tile, k_pad - c0);
            nearest(scaled.data(), rows, d, transposed.data() + c0, k_pad, norms.data() + c0, count,
                    static_cast<std::int64_t>(c0), best, labels + row0);
        }
        if (inner_product) return;  // best = -<x, c>
        for (std::size_t i = 0; i < rows; ++i) {
            const float* row = x + (row0 + i) * d;
            double norm = 0.0;
            for (std::size_t j = 0; j < d; ++j) norm += static_cast<double>(row[j]) * row[j];
            best[i] = std::max(0.0f, static_cast<float>(best[i] + norm));
        }
    });
}

void cluster_sums(const float* x, std::size_t n, std::size_t d, const std::int64_t* labels,
                  std::size_t k, double* sums, std::int64_t* counts) {
    std::fill(sums, sums + k * d, 0.0);
    std::fill(counts, counts + k, std::int64_t{0});
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t label = labels[i];
        if (label < 0 || static_cast<std::size_t>(label) >= k)
            throw std::invalid_argument("label " + std::to_string(label) + " out of range [0, " +
                                        std::to_string(k) + ")");
        double* row = sums + static_cast<std::size_t>(label) * d;
        const float* xi = x + i * d;
        for (std::size_t j = 0; j < d; ++j) row[j] += xi[j];
        ++counts[label];
    }
}

}  // namespace simdex
