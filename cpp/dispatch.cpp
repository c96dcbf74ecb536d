#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define SIMDEX_X86 1
#endif

namespace simdex {
namespace {

struct Features {
    bool sse42 = false, popcnt = false, avx = false, avx2 = false, fma = false, f16c = false,
         bmi2 = false, avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false,
         avx512vpopcntdq = false, avx512vnni = false, avx512bf16 = false, avx512fp16 = false,
         neon = false, os_avx = false, os_avx512 = false;
};

#ifdef SIMDEX_X86
std::uint64_t read_xcr0() {
    std::uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<std::uint64_t>(edx) << 32) | eax;
}
#endif

Features detect() {
    Features f;
#ifdef SIMDEX_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.sse42 = c & (1u << 20);
    f.popcnt = c & (1u << 23);
    f.fma = c & (1u << 12);
    f.f16c = c & (1u << 29);
    bool osxsave = c & (1u << 27);
    f.avx = c & (1u << 28);
    if (osxsave) {
        std::uint64_t xcr0 = read_xcr0();
        f.os_avx = (xcr0 & 0x6) == 0x6;              // SSE + AVX state
        f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM state
    }
    unsigned max_leaf = __get_cpuid_max(0, nullptr);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = b & (1u << 5);
        f.bmi2 = b & (1u << 8);
        f.avx512f = b & (1u << 16);
        f.avx512dq = b & (1u << 17);
        f.avx512bw = b & (1u << 30);
        f.avx512vl = b & (1u << 31);
        f.avx512vnni = c & (1u << 11);
        f.avx512vpopcntdq = c & (1u << 14);
        f.avx512fp16 = d & (1u << 23);
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        f.avx512bf16 = a1 & (1u << 5);
    }
    if (!f.os_avx) f.avx = f.avx2 = f.fma = f.f16c = false;
    if (!f.os_avx512)
        f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512vpopcntdq = f.avx512vnni =
            f.avx512bf16 = f.avx512fp16 = false;
#elif defined(__aarch64__)
    f.neon = true;
#endif
    return f;
}

const Features& features() {
    static const Features f = detect();
    return f;
}

SimdLevel compute_detected() {
    const Features& f = features();
    if (f.neon) return SimdLevel::neon;
    // AVX-512 level: F/BW/VL/DQ + VPOPCNTDQ + VNNI + BF16 (what the avx512 files are built with)
    if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vpopcntdq &&
        f.avx512vnni && f.avx512bf16 && f.avx2 && f.fma && f.f16c && f.bmi2)
        return SimdLevel::avx512;
    if (f.avx2 && f.fma && f.f16c && f.bmi2 && f.popcnt) return SimdLevel::avx2;
    return SimdLevel::scalar;
}

int rank(SimdLevel level) {
    // neon sits above scalar on its own branch
    return level == SimdLevel::neon ? 1 : static_cast<int>(level);
}

std::string g_env_warning;

SimdLevel initial_level() {
    SimdLevel detected = detected_level();
    const char* env = std::getenv("SIMDEX_SIMD");
    if (env == nullptr || *env == '\0') return detected;
    SimdLevel wanted;
    try {
        wanted = parse_level(env);
    } catch (const std::invalid_argument&) {
        g_env_warning = std::string("SIMDEX_SIMD='") + env +
                        "' is not one of scalar, avx2, avx512, neon; ignored, using " +
                        level_name(detected);
        return detected;
    }
    if (wanted != SimdLevel::scalar && (rank(wanted) > rank(detected) ||
                                        (wanted == SimdLevel::neon) != (detected == SimdLevel::neon))) {
        g_env_warning = std::string("SIMDEX_SIMD='") + env + "' is above what this CPU supports (" +
                        level_name(detected) + "); SIMDEX_SIMD may only lower the level; using " +
                        level_name(detected);
        return detected;
    }
    return wanted;
}

std::atomic<int>& active_storage() {
    static std::atomic<int> level{static_cast<int>(initial_level())};
    return level;
}

KernelTable build_table(SimdLevel level) {
    KernelTable table;
    table.level = level;
#define SIMDEX_REGISTER(op, isa)                                                        \
    if (#isa == std::string("scalar") ||                                                \
        (level != SimdLevel::scalar && rank(parse_level(#isa)) <= rank(level)))         \
        register_##op##_##isa(table);
#include "kernel_registry.inc"
#undef SIMDEX_REGISTER
    return table;
}

}  // namespace

SimdLevel detected_level() {
    static const SimdLevel level = compute_detected();
    return level;
}

SimdLevel active_level() { return static_cast<SimdLevel>(active_storage().load()); }

void set_active_level(SimdLevel level) {
    SimdLevel detected = detected_level();
    bool ok = level == SimdLevel::scalar ||
              (level == SimdLevel::neon ? detected == SimdLevel::neon
                                        : detected != SimdLevel::neon && rank(level) <= rank(detected));
    if (!ok)
        throw std::invalid_argument(std::string("SIMD level '") + level_name(level) +
                                    "' is not supported by this CPU (highest: " +
                                    level_name(detected) + ")");
    active_storage().store(static_cast<int>(level));
}

const KernelTable& kernels_for(SimdLevel level) {
    static std::once_flag once[4];
    static KernelTable tables[4];
    int i = static_cast<int>(level);
    std::call_once(once[i], [&] { tables[i] = build_table(level); });
    return tables[i];
}

const char* level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar: return "scalar";
        case SimdLevel::avx2: return "avx2";
        case SimdLevel::avx512: return "avx512";
        case SimdLevel::neon: return "neon";
    }
    return "?";
}

SimdLevel parse_level(const std::string& name) {
    if (name == "scalar") return SimdLevel::scalar;
    if (name == "avx2") return SimdLevel::avx2;
    if (name == "avx512") return SimdLevel::avx512;
    if (name == "neon") return SimdLevel::neon;
    throw std::invalid_argument("unknown SIMD level '" + name +
                                "'; expected one of scalar, avx2, avx512, neon");
}

std::map<std::string, bool> cpu_features() {
    const Features& f = features();
    return {{"sse4.2", f.sse42},           {"popcnt", f.popcnt},
            {"avx", f.avx},                {"avx2", f.avx2},
            {"fma", f.fma},                {"f16c", f.f16c},
            {"bmi2", f.bmi2},              {"avx512f", f.avx512f},
            {"avx512bw", f.avx512bw},      {"avx512vl", f.avx512vl},
            {"avx512dq", f.avx512dq},      {"avx512vpopcntdq", f.avx512vpopcntdq},
            {"avx512vnni", f.avx512vnni},  {"avx512bf16", f.avx512bf16},
            {"avx512fp16", f.avx512fp16},  {"neon", f.neon}};
}

std::string env_warning() {
    active_level();  // make sure the variable was read
    return g_env_warning;
}

}  // namespace simdex
