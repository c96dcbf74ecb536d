// Row memory advised as transparent huge pages (see memory.hpp).
#include "index/memory.hpp"

#include <sys/mman.h>

#include <new>

namespace simdex {

std::uint8_t* allocate_rows(std::size_t bytes) {
    constexpr std::size_t kHuge = std::size_t(2) << 20;
    const bool huge = bytes >= 2 * kHuge;
    const std::size_t align = huge ? kHuge : 64;
    const std::size_t rounded = (bytes + align - 1) / align * align;
    void* memory = std::aligned_alloc(align, rounded);
    if (!memory) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (huge) madvise(memory, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
    return static_cast<std::uint8_t*>(memory);
}

}  // namespace simdex
