// Re-rank rows in RAM or in a memory-mapped file (see rerank.hpp).
#include "index/rerank.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>

#include "index/exact.hpp"

namespace simdex {

namespace {

struct CrcTable {
    std::uint32_t v[256];
    CrcTable() {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int b = 0; b < 8; ++b) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            v[i] = c;
        }
    }
};

[[noreturn]] void fail_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// Largest float32 magnitude that float16 storage takes (65520 and above round to inf).
constexpr float kHalfLimit = 65520.0f;

}  // namespace

std::uint32_t crc32_bytes(const std::uint8_t* data, std::size_t n, std::uint32_t crc) {
    static const CrcTable table;
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table.v[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

std::uint16_t float_to_half(float f) {
    std::uint32_t x;
    std::memcpy(&x, &f, 4);
    const std::uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0u));
    if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds past 65504
    if (a < 0x38800000u) {  // below 2^-14: a half subnormal h * 2^-24
        const std::uint32_t e = a >> 23, shift = 126 - e;
        if (shift > 24) return static_cast<std::uint16_t>(sign);
        const std::uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
        std::uint32_t h = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) ++h;
        return static_cast<std::uint16_t>(sign | h);
    }
    std::uint32_t h = (a - 0x38000000u) >> 13;  // exponent re-biased 127 -> 15
    const std::uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
}

RerankRows::RerankRows(const KernelTable& table, Storage storage, Metric metric, std::size_t dim,
                       const float* lo, const float* scale)
    : table_(&table) {
    if (storage != Storage::f32 && storage != Storage::f16 && storage != Storage::u8)
        throw std::invalid_argument("re-rank rows are float32, float16 or int8");
    if (metric == Metric::hamming) throw std::invalid_argument("re-ranking works on float metrics l2, ip, cosine");
    if (dim == 0) throw std::invalid_argument("re-rank rows need dim >= 1");
    if ((storage == Storage::u8) != (lo != nullptr && scale != nullptr))
        throw std::invalid_argument("int8 re-rank rows need trained ranges (lo, scale), and only they do");
    spec_.storage = storage;
    spec_.metric = metric;
    spec_.dim = dim;
    spec_.row_bytes = row_bytes_for(storage, dim);
    if (storage == Storage::u8) {
        lo_.assign(lo, lo + dim);
        scale_.assign(scale, scale + dim);
        spec_.lo = lo_.data();
        spec_.scale = scale_.data();
    }
}

RerankRows::~RerankRows() {
    if (map_) munmap(map_, map_bytes_);
    if (fd_ >= 0) close(fd_);
}

void RerankRows::check_empty(const char* what) const {
    if (n_ != 0 || fd_ >= 0) throw std::invalid_argument(std::string(what) + ": the re-rank store is not empty");
}

void RerankRows::create_file(const std::string& path) {
    std::unique_lock<RwLock> guard(lock_);
    check_empty("create_file");
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_errno(path);
    fd_ = fd;
    writable_ = true;
    path_ = path;
}

void RerankRows::open_file(const std::string& path, std::size_t n) {
    std::unique_lock<RwLock> guard(lock_);
    check_empty("open_file");
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    bool writable = fd >= 0;
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_errno(path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        fail_errno(path);
    }
    const std::size_t bytes = n * spec_.row_bytes;
    if (static_cast<std::size_t>(st.st_size) != bytes) {
        close(fd);
        throw std::invalid_argument("rerank file '" + path + "' has " + std::to_string(st.st_size) +
                                    " bytes; the index expects " + std::to_string(bytes));
    }
    fd_ = fd;
    writable_ = writable;
    path_ = path;
    try {
        map_file(bytes);
    } catch (...) {
        close(fd_);
        fd_ = -1;
        path_.clear();
        throw;
    }
    n_ = n;
}

void RerankRows::restore(const std::uint8_t* rows, std::size_t n) {
    std::unique_lock<RwLock> guard(lock_);
    check_empty("restore");
    const std::size_t bytes = n * spec_.row_bytes;
    if (bytes) {
        RowMemory memory(allocate_rows(bytes));
        std::memcpy(memory.get(), rows, bytes);
        mem_ = std::move(memory);
        mem_bytes_ = bytes;
    }
    n_ = n;
}

// Map the file with room for at least `bytes` (the mapping may run past the file's end:
// only the first n_ rows, always inside the file, are ever read).
void RerankRows::map_file(std::size_t bytes) {
    if (bytes <= map_bytes_ && map_) return;
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    std::size_t want = std::max(bytes, map_bytes_ + map_bytes_ / 2);
    want = (want + page - 1) / page * page;
    if (want == 0) return;
    void* p = mmap(nullptr, want, writable_ ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) fail_errno("mmap " + path_);
    if (map_) munmap(map_, map_bytes_);
    map_ = static_cast<std::uint8_t*>(p);
    map_bytes_ = want;
}

void encode_rows(const StoreSpec& spec, const float* x, std::size_t n, std::uint8_t* out) {
    const std::size_t d = spec.dim;
    switch (spec.storage) {
        case Storage::f32:
            std::memcpy(out, x, n * d * 4);
            return;
        case Storage::f16: {
            for (std::size_t i = 0; i < n * d; ++i)
                if (!(std::fabs(x[i]) < kHalfLimit))
                    throw std::invalid_argument(
                        "float16 storage holds values up to 65504 in magnitude; got " + std::to_string(x[i]) +
                        ". Use storage='float32', or scale the vectors");
            auto* h = reinterpret_cast<std::uint16_t*>(out);
            for (std::size_t i = 0; i < n * d; ++i) h[i] = float_to_half(x[i]);
            return;
        }
        case Storage::u8:
            // code = clip(rint((x - lo) / scale), 0, 255); constant dimensions (scale 0) code 0.
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < d; ++j) {
                    const float s = spec.scale[j];
                    float c = s > 0 ? std::nearbyint((x[i * d + j] - spec.lo[j]) / s) : 0.0f;
                    c = std::min(std::max(c, 0.0f), 255.0f);
                    out[i * d + j] = static_cast<std::uint8_t>(c);
                }
            return;
        default:
            throw std::invalid_argument("encode_rows: unsupported storage");
    }
}

void RerankRows::encode(const float* x, std::size_t n, std::uint8_t* out) const { encode_rows(spec_, x, n, out); }

void RerankRows::put(const std::int64_t* slots, const float* x, std::size_t n) {
    if (n == 0) return;
    std::int64_t top = -1;
    for (std::size_t i = 0; i < n; ++i) {
        if (slots[i] < 0 || slots[i] >= (std::int64_t(1) << 40))
            throw std::invalid_argument("re-rank slot " + std::to_string(slots[i]) + " out of range");
        top = std::max(top, slots[i]);
    }
    const std::size_t rb = spec_.row_bytes;
    std::vector<std::uint8_t> rows(n * rb);
    encode(x, n, rows.data());  // throws before anything changes
    std::unique_lock<RwLock> guard(lock_);
    const std::size_t need = std::max(n_, static_cast<std::size_t>(top) + 1);
    if (fd_ >= 0) {
        put_file(slots, rows.data(), n, need);
    } else {
        if (need > n_) {
            if (mem_bytes_ < need * rb) {  // a failed allocation leaves the store as it was
                const std::size_t room = std::max(need * rb, mem_bytes_ * 3 / 2);
                RowMemory grown(allocate_rows(room));
                if (n_) std::memcpy(grown.get(), mem_.get(), n_ * rb);
                mem_ = std::move(grown);
                mem_bytes_ = room;
            }
            std::memset(mem_.get() + n_ * rb, 0, (need - n_) * rb);  // rows in between are zero
        }
        for (std::size_t i = 0; i < n; ++i)
            std::memcpy(mem_.get() + static_cast<std::size_t>(slots[i]) * rb, rows.data() + i * rb, rb);
    }
    n_ = need;
}

void RerankRows::put_file(const std::int64_t* slots, const std::uint8_t* rows, std::size_t n, std::size_t need) {
    if (!writable_)
        throw std::system_error(EACCES, std::generic_category(),
                                "rerank file '" + path_ + "' is read-only: the index can search but not add");
    const std::size_t rb = spec_.row_bytes, old_bytes = n_ * rb;
    auto undo = [&](const std::string& what) {
        const int err = errno;
        if (need > n_) {
            if (ftruncate(fd_, static_cast<off_t>(old_bytes)) != 0) { /* the size check at load catches it */ }
        }
        errno = err;
        fail_errno(what);
    };
    if (need > n_) {
        if (ftruncate(fd_, static_cast<off_t>(need * rb)) != 0) undo("rerank file '" + path_ + "'");
    }
    // Runs of consecutive slots go out in one write.
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i + 1;
        while (j < n && slots[j] == slots[j - 1] + 1) ++j;
        const std::uint8_t* src = rows + i * rb;
        std::size_t left = (j - i) * rb;
        off_t at = static_cast<off_t>(static_cast<std::size_t>(slots[i]) * rb);
        while (left > 0) {
            ssize_t w = pwrite(fd_, src, left, at);
            if (w < 0) {
                if (errno == EINTR) continue;
                undo("rerank file '" + path_ + "'");
            }
            src += w;
            left -= static_cast<std::size_t>(w);
            at += w;
        }
        i = j;
    }
    try {
        map_file(need * rb);
    } catch (...) {
        const int err = errno;
        if (ftruncate(fd_, static_cast<off_t>(old_bytes)) != 0) { /* as above */ }
        errno = err;
        throw;
    }
}

void RerankRows::append(const float* x, std::size_t n) {
    std::vector<std::int64_t> slots(n);
    std::size_t start;
    {
        std::shared_lock<RwLock> guard(lock_);
        start = n_;
    }
    for (std::size_t i = 0; i < n; ++i) slots[i] = static_cast<std::int64_t>(start + i);
    put(slots.data(), x, n);
}

void RerankRows::decode(const std::int64_t* slots, std::size_t n, float* out) const {
    std::shared_lock<RwLock> guard(lock_);
    for (std::size_t i = 0; i < n; ++i)
        if (slots[i] < 0 || static_cast<std::size_t>(slots[i]) >= n_)
            throw std::invalid_argument("slot " + std::to_string(slots[i]) + " has no re-rank row (" +
                                        std::to_string(n_) + " rows)");
    const std::uint8_t* base = data();
    for (std::size_t i = 0; i < n; ++i)
        decode_row(spec_, base + static_cast<std::size_t>(slots[i]) * spec_.row_bytes, out + i * spec_.dim);
}

void RerankRows::rerank(const float* queries, std::size_t nq, const std::int64_t* candidates, std::size_t c,
                        std::size_t k, std::size_t threads, float* out_distances, std::int64_t* out_slots) const {
    std::shared_lock<RwLock> guard(lock_);
    for (std::size_t i = 0; i < nq * c; ++i)
        if (candidates[i] >= static_cast<std::int64_t>(n_))
            throw std::invalid_argument("candidate slot " + std::to_string(candidates[i]) +
                                        " has no row in the re-rank store of " + std::to_string(n_));
    rerank_candidates(*table_, spec_, data(), queries, nq, candidates, c, k, threads, out_distances, out_slots);
}

void RerankRows::copy_rows(std::uint8_t* out) const {
    std::shared_lock<RwLock> guard(lock_);
    if (n_) std::memcpy(out, data(), n_ * spec_.row_bytes);
}

std::uint32_t RerankRows::crc32() const {
    std::shared_lock<RwLock> guard(lock_);
    return n_ ? crc32_bytes(data(), n_ * spec_.row_bytes) : 0;
}

std::size_t RerankRows::size() const {
    std::shared_lock<RwLock> guard(lock_);
    return n_;
}

std::size_t RerankRows::nbytes() const {
    std::shared_lock<RwLock> guard(lock_);
    return (lo_.size() + scale_.size()) * 4 + (fd_ >= 0 ? 0 : n_ * spec_.row_bytes);
}

void keep_candidates(const RerankRows* rows, const float* queries, std::size_t nq, const float* cand_d,
                     const std::int64_t* cand, std::size_t c, std::size_t k, std::size_t threads,
                     float* out_distances, std::int64_t* out_slots) {
    if (rows) {
        rows->rerank(queries, nq, cand, c, k, threads, out_distances, out_slots);
        return;
    }
    const std::size_t keep = std::min(c, k);
    for (std::size_t i = 0; i < nq; ++i) {  // candidates are sorted: the first k
        std::copy(cand_d + i * c, cand_d + i * c + keep, out_distances + i * k);
        std::copy(cand + i * c, cand + i * c + keep, out_slots + i * k);
        std::fill(out_distances + i * k + keep, out_distances + (i + 1) * k, std::numeric_limits<float>::infinity());
        std::fill(out_slots + i * k + keep, out_slots + (i + 1) * k, -1);
    }
}

}  // namespace simdex
