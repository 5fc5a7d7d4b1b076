"""Health checks: what llama.cpp was built with, where things live, and a tiny inference in a child process.

The inference runs in a subprocess because a llama.cpp built for the wrong CPU dies with SIGILL, which
would kill us too; in a child we can catch it and name the rebuild command.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF" '
    "pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36"
)
PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    hint: str = ""


def probe_command(model_path: str, embedding: bool = False) -> list[str]:
    return [sys.executable, "-m", "slm_desk.models.doctor", model_path, *(["--embedding"] if embedding else [])]


def probe_inference(command: list[str]) -> ProbeResult:
    """Run a probe command and explain how it ended."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return ProbeResult(
            False, f"tiny inference did not finish in {PROBE_TIMEOUT_S} s", "check CPU load and [runtime] threads"
        )
    if done.returncode == -signal.SIGILL:
        return ProbeResult(
            False,
            "llama.cpp died with SIGILL (illegal instruction): it was built for CPU features this machine refuses",
            f"rebuild it: scripts/install.sh, or by hand: {REBUILD}",
        )
    if done.returncode < 0:
        return ProbeResult(
            False,
            f"tiny inference was killed by signal {-done.returncode}",
            "run it again; if it repeats, rebuild llama-cpp-python",
        )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return ProbeResult(False, f"tiny inference failed: {tail[0]}", "see the message above")
    return ProbeResult(True, done.stdout.strip())


def _probe(model_path: str, embedding: bool = False) -> None:
    """The child side: load the model, generate a few tokens (or embed two sentences), print them."""
    import llama_cpp

    from slm_desk.models.preload import refuse_if_no_model_allowed

    refuse_if_no_model_allowed(model_path)
    if embedding:
        import numpy as np

        encoder = llama_cpp.Llama(model_path=model_path, embedding=True, n_ctx=512, verbose=False)
        a, b = np.array(encoder.embed(["my card was stolen", "someone took my card"], normalize=True))
        print(f"ok: {a.size} dimensions; 'my card was stolen' vs 'someone took my card': cosine {float(a @ b):.2f}")
        return
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, verbose=False)
    out: Any = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
    print(f"ok: generated {out['usage']['completion_tokens']} tokens: {out['choices'][0]['text'].strip()!r}")


if __name__ == "__main__":
    _probe(sys.argv[1], "--embedding" in sys.argv[2:])
