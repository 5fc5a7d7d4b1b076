"""How llama.cpp's threads wait for each other: set once, before its OpenMP runtime loads.

llama.cpp's CPU backend runs each step on OpenMP threads that meet at barriers. By default a thread that arrives
early spins; when another program holds a core, a spinning thread burns it while its partner waits for it, and one
answer took 15x its quiet time beside two busy loops (scripts/busy.py, the README's "A busy machine"). OpenMP reads
its wait policy when its library loads, so this runs before the first `import llama_cpp`.
"""

from __future__ import annotations

import os
import sys

from slm_desk.data.config import RuntimeConfig

POLICY = "OMP_WAIT_POLICY"


def prepare(runtime: RuntimeConfig) -> None:
    """Set [runtime] wait as OpenMP's wait policy, unless the environment already names one or llama.cpp is loaded
    (then the first model's setting stands for the process)."""
    if "llama_cpp" in sys.modules or POLICY in os.environ or runtime.wait == "default":
        return
    os.environ[POLICY] = runtime.wait.upper()
