"""The build stays portable: no -march=native, every kernel file registered, the aarch64 sources
compile, and the neon tier agrees with scalar when run under qemu-aarch64."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, kernel_files

CPP = ROOT / "cpp"
# The cross-compiled aarch64 checks do not depend on the x86 tier: the CI pass with
# SIMDEX_SIMD=scalar would only repeat them.
ONCE = pytest.mark.skipif(
    bool(os.environ.get("SIMDEX_SIMD")), reason="runs once, in the pass at the detected tier"
)


def test_no_march_native():
    for path in [ROOT / "CMakeLists.txt", ROOT / "pyproject.toml", *CPP.rglob("*.[ch]pp")]:
        assert "march=native" not in path.read_text(), path


def kernel_options(op: str) -> list[str]:
    """CMakeLists.txt's SIMDEX_KERNEL_OPTIONS_<op>: extra compile options of every file of op."""
    found = re.search(rf"set\(SIMDEX_KERNEL_OPTIONS_{op} ([^)]*)\)", (ROOT / "CMakeLists.txt").read_text())
    return found.group(1).split() if found else []


def tier_lines(built: set[str]) -> str:
    """tiers.inc as CMake writes it, for a build of the tiers in `built`."""
    text = (ROOT / "CMakeLists.txt").read_text()
    tiers = re.search(r"set\(SIMDEX_TIERS ([^)]*)\)", text).group(1).split()
    lines = []
    for tier in tiers:
        words = re.search(rf"set\(SIMDEX_TIER_{tier} ([^)]*)\)", text).group(1).replace('""', "").split()
        parent, features = (words[0], words[1:]) if words else ("", [])
        lines.append(f'SIMDEX_TIER({tier}, "{parent}", "{" ".join(features)}", {int(tier in built)})\n')
    return "".join(lines)


def test_every_kernel_file_exists_and_every_op_has_scalar():
    files = kernel_files()
    for op, tier in files:
        assert (CPP / "kernels" / op / f"{tier}.cpp").exists(), f"missing kernels/{op}/{tier}.cpp"
        assert (op, "scalar") in files, f"op {op} has no scalar file"
    listed = {f"{op}/{tier}.cpp" for op, tier in files}
    on_disk = {f"{p.parent.name}/{p.name}" for p in (CPP / "kernels").glob("*/*.cpp")}
    assert on_disk == listed, f"kernel files not registered: {on_disk - listed}"


def test_tier_files_register_their_own_tier():
    for op, tier in kernel_files():
        text = (CPP / "kernels" / op / f"{tier}.cpp").read_text()
        assert f"void register_{op}_{tier}(KernelTable&" in text, f"kernels/{op}/{tier}.cpp"


@ONCE
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="aarch64 cross compiler not installed (apt-get install g++-aarch64-linux-gnu)")
def test_aarch64_sources_compile(tmp_path):
    arm = [(op, tier) for op, tier in kernel_files() if tier in ("scalar", "neon")]
    (tmp_path / "kernel_registry.inc").write_text(
        "".join(f"SIMDEX_REGISTER({op}, {tier})\n" for op, tier in arm))
    (tmp_path / "tiers.inc").write_text(tier_lines({"scalar", "neon"}))
    sources = [CPP / "kernels" / op / f"{tier}.cpp" for op, tier in arm]
    sources += [p for p in (CPP / "index").glob("*.cpp")] + [CPP / "dispatch.cpp", CPP / "parallel.cpp"]
    options = {CPP / "kernels" / op / f"{tier}.cpp": kernel_options(op) for op, tier in arm}
    for src in sources:
        r = subprocess.run(["aarch64-linux-gnu-g++", "-std=c++17", "-O1", "-march=armv8-a", "-fsyntax-only",
                            *options.get(src, []), "-I", str(CPP), "-I", str(tmp_path), str(src)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{src}:\n{r.stderr[:2000]}"


def test_core_stub_lists_every_binding():
    """python/simdex/_core.pyi (pybind11-stubgen output) must cover the compiled module."""
    import simdex._core as core

    stub = (ROOT / "python" / "simdex" / "_core.pyi").read_text()
    public = [name for name in dir(core) if not name.startswith("_")]
    missing = [name for name in public if not re.search(rf"\b(def|class) {name}\b", stub)]
    assert not missing, f"regenerate the stub (pybind11-stubgen simdex._core): missing {missing}"


# Every kernel the neon tier overrides, against the scalar tier, on tail-heavy sizes; built
# with the aarch64 cross compiler and run under qemu-aarch64 (user-mode emulation), so the
# Graviton tier runs in CI on x86.
NEON_HARNESS = r"""
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <vector>
#include "kernels/kernels.hpp"
using namespace simdex;
static int failures = 0;
static void check(bool ok, const char* what, std::size_t size) {
    if (!ok && failures++ < 20) std::printf("MISMATCH %s size %zu\n", what, size);
}
static std::uint16_t to_f16(float v) { __fp16 h = static_cast<__fp16>(v); std::uint16_t b; std::memcpy(&b, &h, 2); return b; }
static std::uint16_t to_bf16(float v) { std::uint32_t b; std::memcpy(&b, &v, 4); return static_cast<std::uint16_t>(b >> 16); }
int main() {
    KernelTable s, n;
#define SIMDEX_REGISTER(op, tier) register_##op##_##tier(n); if (std::string(#tier) == "scalar") register_##op##_##tier(s);
#include "kernel_registry.inc"
#undef SIMDEX_REGISTER
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-2.0f, 2.0f);
    const std::size_t dims[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 384, 1000};
    const std::size_t rows = 5;
    for (std::size_t d : dims) {
        std::vector<float> q(d), x(rows * d), scale(d), out_s(rows), out_n(rows);
        std::vector<std::uint16_t> h(rows * d), b(rows * d);
        std::vector<std::uint8_t> u(rows * d);
        std::vector<std::int8_t> qi(d);
        double mag = 0;
        for (std::size_t j = 0; j < d; ++j) { q[j] = uni(rng); scale[j] = 0.01f + std::fabs(uni(rng)); qi[j] = static_cast<std::int8_t>(rng() % 256 - 128); }
        for (std::size_t j = 0; j < rows * d; ++j) { x[j] = uni(rng); h[j] = to_f16(x[j]); b[j] = to_bf16(x[j]); u[j] = static_cast<std::uint8_t>(rng() % 256); }
        for (std::size_t j = 0; j < d; ++j) mag += 4.0 * (std::fabs(q[j]) + 2) * (2 + 255 * scale[j]);
        const float tol = static_cast<float>(1e-5 * mag) + 1e-5f;
        auto close = [&](float a, float c) { return std::fabs(a - c) <= tol; };
        check(close(s.dot_f32(q.data(), x.data(), d), n.dot_f32(q.data(), x.data(), d)), "dot_f32", d);
        check(close(s.l2_f32(q.data(), x.data(), d), n.l2_f32(q.data(), x.data(), d)), "l2_f32", d);
        check(close(s.dot_f16(q.data(), h.data(), d), n.dot_f16(q.data(), h.data(), d)), "dot_f16", d);
        check(close(s.l2_f16(q.data(), h.data(), d), n.l2_f16(q.data(), h.data(), d)), "l2_f16", d);
        check(close(s.dot_bf16(q.data(), b.data(), d), n.dot_bf16(q.data(), b.data(), d)), "dot_bf16", d);
        check(close(s.l2_bf16(q.data(), b.data(), d), n.l2_bf16(q.data(), b.data(), d)), "l2_bf16", d);
        check(close(s.dot_u8(q.data(), u.data(), d), n.dot_u8(q.data(), u.data(), d)), "dot_u8", d);
        check(close(s.l2_u8(q.data(), scale.data(), u.data(), d), n.l2_u8(q.data(), scale.data(), u.data(), d)), "l2_u8", d);
        check(s.dot_s8u8(qi.data(), u.data(), d) == n.dot_s8u8(qi.data(), u.data(), d), "dot_s8u8", d);
        s.dot_f32_rows(q.data(), x.data(), rows, d, out_s.data()); n.dot_f32_rows(q.data(), x.data(), rows, d, out_n.data());
        for (std::size_t i = 0; i < rows; ++i) check(close(out_s[i], out_n[i]), "dot_f32_rows", d);
        std::vector<float> norm_s(rows), norm_n(rows);
        s.dot_norm_f32_rows(q.data(), x.data(), rows, d, out_s.data(), norm_s.data());
        n.dot_norm_f32_rows(q.data(), x.data(), rows, d, out_n.data(), norm_n.data());
        for (std::size_t i = 0; i < rows; ++i) check(close(out_s[i], out_n[i]) && close(norm_s[i], norm_n[i]), "dot_norm_f32_rows", d);
        s.l2_f16_rows(q.data(), h.data(), rows, d, out_s.data()); n.l2_f16_rows(q.data(), h.data(), rows, d, out_n.data());
        for (std::size_t i = 0; i < rows; ++i) check(close(out_s[i], out_n[i]), "l2_f16_rows", d);
        check(s.hamming(u.data(), u.data() + d, d) == n.hamming(u.data(), u.data() + d, d), "hamming", d);
        // GEMM tile: 3 queries x rows
        std::vector<float> ts(3 * rows), tn(3 * rows), scratch(std::max(s.gemm_scratch_floats(3, rows, d), n.gemm_scratch_floats(3, rows, d)));
        s.ip_tile_f32(x.data(), 3, x.data(), rows, d, ts.data(), rows, scratch.data());
        n.ip_tile_f32(x.data(), 3, x.data(), rows, d, tn.data(), rows, scratch.data());
        for (std::size_t i = 0; i < 3 * rows; ++i) check(close(ts[i], tn[i]), "ip_tile_f32", d);
    }
    // GEMM with rows packed once (gemm_pack_rows): byte-identical to packing per call, row
    // tile by row tile as the callers cut them (packed + r0 * d); scalar has nothing to pack
    check(s.gemm_pack_rows == nullptr && s.ip_tile_f32_packed == nullptr, "scalar packs nothing", 0);
    const std::size_t pack_shapes[][3] = {{1, 1, 1}, {1, 13, 7}, {5, 12, 384}, {6, 481, 513}, {9, 960, 1100}, {70, 100, 1024}, {3, 37, 1025}};
    for (const auto& shape : pack_shapes) {
        const std::size_t nq = shape[0], count = shape[1], d = shape[2], tile_n = n.gemm_tile_n;
        std::vector<float> xs(count * d), qs(nq * d), plain(nq * count), pre(nq * count);
        for (auto& v : xs) v = uni(rng);
        for (auto& v : qs) v = uni(rng);
        const std::size_t floats = n.gemm_packed_floats(count, d);
        float* packed = static_cast<float*>(::operator new[](floats * sizeof(float), std::align_val_t(64)));
        n.gemm_pack_rows(xs.data(), count, d, packed);
        std::vector<float> scratch(n.gemm_scratch_floats(nq, tile_n, d));
        for (std::size_t r0 = 0; r0 < count; r0 += tile_n) {
            const std::size_t r = std::min(tile_n, count - r0);
            n.ip_tile_f32(qs.data(), nq, xs.data() + r0 * d, r, d, plain.data() + r0, count, scratch.data());
            n.ip_tile_f32_packed(qs.data(), nq, packed + r0 * d, r, d, pre.data() + r0, count, scratch.data());
        }
        check(std::memcmp(plain.data(), pre.data(), plain.size() * sizeof(float)) == 0, "ip_tile_f32_packed", count * 10000 + d);
        ::operator delete[](packed, std::align_val_t(64));
    }
    // PQ 8-bit ADC and 4-bit fast-scan (every row's sum through the emit callback)
    for (std::size_t m : {1, 4, 7, 8, 16, 33}) {
        const std::size_t count = 70, m4 = (m + 3) / 4 * 4, nblocks = (count + 31) / 32;
        std::vector<float> lut(m * 256), o_s(count), o_n(count);
        std::vector<std::uint8_t> codes(count * m), blocks(nblocks * m4 * 16), luts(2 * m4 * 32);
        for (auto& v : lut) v = uni(rng);
        for (auto& c : codes) c = static_cast<std::uint8_t>(rng() % 256);
        s.pq.adc_u8(lut.data(), codes.data(), count, m, o_s.data());
        n.pq.adc_u8(lut.data(), codes.data(), count, m, o_n.data());
        for (std::size_t i = 0; i < count; ++i) check(std::fabs(o_s[i] - o_n[i]) <= 1e-4f * m, "adc_u8", m);
        for (auto& v : blocks) v = static_cast<std::uint8_t>(rng() % 256);
        for (auto& v : luts) v = static_cast<std::uint8_t>(rng() % 256);
        struct Sums { std::vector<std::uint32_t> v; };
        auto emit = [](void* ctx, std::size_t query, std::size_t block, std::uint32_t mask, const std::uint16_t* sums) {
            auto* out = static_cast<Sums*>(ctx);
            for (int r = 0; r < 32; ++r) out->v[(query * 64 + block) * 32 + r] = (mask >> r & 1) ? sums[r] : 0xFFFFFFFFu;
        };
        Sums a{std::vector<std::uint32_t>(2 * 64 * 32)}, c{std::vector<std::uint32_t>(2 * 64 * 32)};
        std::vector<std::uint16_t> th_s(2, 65535), th_n(2, 65535);
        s.pq.fastscan_u4(blocks.data(), nblocks, m4, luts.data(), 2, th_s.data(), emit, &a);
        n.pq.fastscan_u4(blocks.data(), nblocks, m4, luts.data(), 2, th_n.data(), emit, &c);
        check(a.v == c.v, "fastscan_u4", m);
        // fastscan_tables_u4 (entries <= 63, some at 63; 1..6 queries, tables shared and out of
        // order, thresholds from none to every row) and the one-query fastscan1_u4
        for (auto& v : luts) v = static_cast<std::uint8_t>(rng() % 16 == 0 ? 63 : rng() % 64);
        const std::uint8_t* pointers[6];
        for (std::size_t nq = 1; nq <= 6; ++nq) {
            for (std::size_t j = 0; j < nq; ++j) pointers[j] = luts.data() + ((j * 5 + nq) % 2) * m4 * 32;
            std::vector<std::uint16_t> t_s(nq), t_n(nq);
            for (std::size_t j = 0; j < nq; ++j) t_s[j] = t_n[j] = static_cast<std::uint16_t>(j % 3 == 0 ? 65535 : j % 3 == 1 ? 0 : 31 * m4);
            Sums ta{std::vector<std::uint32_t>(6 * 64 * 32)}, tc{std::vector<std::uint32_t>(6 * 64 * 32)};
            s.pq.fastscan_tables_u4(blocks.data(), nblocks, m4, pointers, nq, t_s.data(), emit, &ta);
            n.pq.fastscan_tables_u4(blocks.data(), nblocks, m4, pointers, nq, t_n.data(), emit, &tc);
            check(ta.v == tc.v, "fastscan_tables_u4", m * 10 + nq);
        }
        std::vector<std::uint16_t> one_s(nblocks * 32), one_n(nblocks * 32);
        s.pq.fastscan1_u4(blocks.data(), nblocks, m4, luts.data(), one_s.data());
        n.pq.fastscan1_u4(blocks.data(), nblocks, m4, luts.data(), one_n.data());
        check(one_s == one_n, "fastscan1_u4", m);
    }
    // float64 Walsh-Hadamard: bit-identical to scalar for every power of two, with and without signs
    for (std::size_t h = 1; h <= 2048; h *= 2) {
        std::vector<double> y(h), ys, yn;
        std::vector<float> signs(h);
        for (std::size_t j = 0; j < h; ++j) { y[j] = uni(rng); signs[j] = rng() % 2 ? 1.0f : -1.0f; }
        for (const float* sg : {static_cast<const float*>(nullptr), static_cast<const float*>(signs.data())}) {
            ys = y; yn = y;
            s.fwht_f64(ys.data(), sg, h);
            n.fwht_f64(yn.data(), sg, h);
            check(std::memcmp(ys.data(), yn.data(), h * sizeof(double)) == 0, "fwht_f64", h);
        }
    }
    // RaBitQ query tables: the same bytes, scale, bias and smax as scalar for every group count
    // 1..300, over magnitudes from subnormal to overflowing float, with zeros, signed zeros,
    // infinities and NaN sprinkled in
    const double magnitudes[] = {1e-300, 1e-42, 1e-3, 1.0, 1e3, 1e38, 1e300};
    const double specials[] = {0.0, -0.0, HUGE_VAL, -HUGE_VAL, NAN, 3e38, -3e38, 1e-45};
    for (std::size_t m4 = 1; m4 <= 300; m4 += (m4 < 40 ? 1 : 13)) {
        for (std::size_t k = 0; k < 7; ++k) {
            std::vector<double> v(4 * m4);
            for (auto& x : v) x = uni(rng) * magnitudes[k];
            if (k % 2) for (std::size_t e = 0; e < 3; ++e) v[rng() % v.size()] = specials[rng() % 8];
            if (k == 3) for (std::size_t e = 0; e < v.size(); e += 3) v[e] = 0.0;
            std::vector<std::uint8_t> lut_s((m4 + 3) / 4 * 64, 0), lut_n = lut_s;
            float bias_s, bias_n, smax_s, smax_n;
            const float scale_s = s.rabitq_tables(v.data(), m4, lut_s.data(), &bias_s, &smax_s);
            const float scale_n = n.rabitq_tables(v.data(), m4, lut_n.data(), &bias_n, &smax_n);
            check(lut_s == lut_n && std::memcmp(&scale_s, &scale_n, 4) == 0 && std::memcmp(&bias_s, &bias_n, 4) == 0 &&
                  std::memcmp(&smax_s, &smax_n, 4) == 0, "rabitq_tables", m4 * 10 + k);
        }
    }
    std::printf(failures ? "FAILED %d\n" : "ok\n", failures);
    return failures ? 1 : 0;
}
"""


@ONCE
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
                    reason="needs g++-aarch64-linux-gnu and qemu-user (apt-get install g++-aarch64-linux-gnu qemu-user)")
def test_neon_kernels_agree_with_scalar_under_qemu(tmp_path):
    arm = [(op, tier) for op, tier in kernel_files() if tier in ("scalar", "neon")]
    (tmp_path / "kernel_registry.inc").write_text(
        "".join(f"SIMDEX_REGISTER({op}, {tier})\n" for op, tier in arm))
    (tmp_path / "tiers.inc").write_text(tier_lines({"scalar", "neon"}))
    (tmp_path / "harness.cpp").write_text(NEON_HARNESS)
    # each file compiled as the build does: its op's extra options (e.g. -ffp-contract=off)
    compiler = ["aarch64-linux-gnu-g++", "-std=c++17", "-O1", "-march=armv8-a", "-I", str(CPP), "-I", str(tmp_path)]
    objects = []
    for op, source in [("", tmp_path / "harness.cpp")] + [(op, CPP / "kernels" / op / f"{tier}.cpp") for op, tier in arm]:
        objects.append(str(tmp_path / f"{len(objects)}.o"))
        r = subprocess.run([*compiler, *kernel_options(op), "-c", str(source), "-o", objects[-1]],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{source}:\n{r.stderr[:3000]}"
    binary = tmp_path / "harness"
    r = subprocess.run(["aarch64-linux-gnu-g++", "-static", *objects, "-o", str(binary)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]
    r = subprocess.run(["qemu-aarch64", str(binary)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
