"""Long C++ loops honour Ctrl-C: KeyboardInterrupt arrives promptly and the process survives."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SCRIPT = r"""
import sys, time, numpy as np, simdex as sx
x = np.random.default_rng(0).standard_normal((200_000, 64)).astype(np.float32)
q = x[:3000].copy()
print("ready", flush=True)
t0 = time.perf_counter()
try:
    for _ in range(1000):
        sx.knn(q, x, 10, "l2")
except KeyboardInterrupt:
    print(f"interrupted after {time.perf_counter() - t0:.2f}s", flush=True)
    D, I = sx.knn(q[:2], x[:100], 1)  # still usable afterwards
    print("alive", int(I[0, 0]), flush=True)
    sys.exit(0)
sys.exit(3)
"""


def test_ctrl_c_interrupts_exact_search(python_sigint):
    # the child gets the default disposition whatever the parent's (an ignored SIGINT would be
    # inherited, and Python then installs no handler of its own)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - sent
    assert proc.returncode == 0, (out, err)
    assert "interrupted" in out and "alive 0" in out
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
