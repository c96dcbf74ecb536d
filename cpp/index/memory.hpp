// Memory for the large arrays that searches read at random places: graph node blocks, the
// code blocks beside them, re-rank rows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace simdex {

// Uninitialised memory for `bytes` (> 0) bytes, released with std::free: 64-byte aligned; from
// 4 MiB on, 2 MiB aligned and advised as transparent huge pages (Linux), so a search's random
// row reads do not each cost a TLB miss (a page walk per row; nested page tables in a VM make
// each walk dearer). The advice is only advice: the kernel may still back it with 4 KiB pages.
// Throws std::bad_alloc.
std::uint8_t* allocate_rows(std::size_t bytes);

struct FreeMemory {
    void operator()(std::uint8_t* p) const { std::free(p); }
};
// Owner of memory from allocate_rows.
using RowMemory = std::unique_ptr<std::uint8_t[], FreeMemory>;

}  // namespace simdex
