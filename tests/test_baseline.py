"""The x86-64 baseline proven on an old CPU: simdex imports and searches under
`qemu-x86_64 -cpu Nehalem` (SSE4.2 + POPCNT, no AVX: the oldest x86-64-v2 CPU) and picks the
scalar tier, with no illegal instruction; under `-cpu Haswell` it picks the haswell (AVX2) tier, whose
kernels must not use anything newer (AVX-512). Every kernel family runs once against NumPy.

Needs Debian's qemu-user (`apt-get install qemu-user`; ci/test.sh installs it when it can);
skipped without it. qemu emulates the whole interpreter, so the workload is tiny.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess
import sys

import pytest

import simdex as sx

DATA = pathlib.Path(__file__).parent / "data"
QEMU = shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only"),
    pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 not installed (apt-get install qemu-user)"),
    pytest.mark.skipif(bool(os.environ.get("SIMDEX_SANITIZED")), reason="not under the ASan preload"),
    # the emulated CPU chooses the tier: the CI pass with SIMDEX_SIMD=scalar would repeat it
    pytest.mark.skipif(bool(os.environ.get("SIMDEX_SIMD")), reason="runs once, in the pass at the detected tier"),
]

WORKLOAD = """
import pathlib
import sys
import numpy as np
import simdex as sx

expected = sys.argv[1]
level = sx.simd_level()
assert level == expected, f"tier {level!r}, expected {expected!r}; features {sx.cpu_features()}"
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 33)).astype(np.float32)  # 33: every kernel runs its tail path too
q = x[:4] + 0.01
x64, q64 = x.astype(np.float64), q.astype(np.float64)
l2 = ((q64[:, None] - x64[None]) ** 2).sum(-1)
np.testing.assert_allclose(sx.distances(q, x, "l2"), l2, rtol=1e-4, atol=1e-3)
np.testing.assert_allclose(sx.distances(q, x, "ip"), 1 - q64 @ x64.T, rtol=1e-4, atol=1e-3)
assert (sx.knn(q, x, 3).ids[:, 0] == np.arange(4)).all()
assert (sx.knn(q, x, 3, "cosine").ids[:, 0] == np.arange(4)).all()
codes = np.packbits(x > 0, axis=1)
ham = np.unpackbits(codes[:4, None] ^ codes[None], axis=2).sum(-1)
np.testing.assert_array_equal(sx.knn(codes[:4], codes, 5, "hamming").distances, np.sort(ham, 1)[:, :5])
for storage in ("float16", "bfloat16", "int8"):
    index = sx.FlatIndex(33, "l2", storage=storage)
    index.train(x)
    index.add(x)
    assert (index.search(q, 1).ids[:, 0] == np.arange(4)).all(), storage
graph = sx.HNSWIndex(33, "l2", M=8, ef_construction=32)
graph.add(x, threads=1)
assert (graph.search(q, 1).ids[:, 0] == np.arange(4)).all()
pq = sx.PQIndex(32, 8, nbits=4, rerank="memory")
pq.train(x[:, :32])
pq.add(x[:, :32])
assert (pq.search(q[:, :32], 1, rerank_k=20).ids[:, 0] == np.arange(4)).all()
# every index kind, trained elsewhere (8-bit k-means is too slow emulated): the committed files
for path in sorted(pathlib.Path(sys.argv[2]).glob("*.sdx")):
    expected = np.load(path.with_suffix(".npz"))
    dist, ids = sx.load(path).search(expected["queries"], int(expected["k"]))
    np.testing.assert_array_equal(ids, expected["ids"], err_msg=path.name)
    np.testing.assert_allclose(dist, expected["distances"], rtol=1e-5, atol=1e-5, err_msg=path.name)
print("ok", level)
"""


@pytest.mark.parametrize(("cpu", "tier"), [("Nehalem", "scalar"), ("Haswell", "haswell")])
def test_runs_on_an_emulated_cpu(cpu, tier):
    here = str(pathlib.Path(sx.__file__).parent.parent.absolute())
    env = {k: v for k, v in os.environ.items() if k != "SIMDEX_SIMD"}
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([QEMU, "-cpu", cpu, sys.executable, "-c", WORKLOAD, tier, str(DATA)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (
        f"under qemu -cpu {cpu}: exit {proc.returncode} (-4 / 132 = illegal instruction)\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    assert proc.stdout.split()[-2:] == ["ok", tier]
