"""What is set once before llama.cpp loads: how its threads wait for each other, and where its log lines go.

llama.cpp's CPU backend runs each step on OpenMP threads that meet at barriers. By default a thread that arrives
early spins; when another program holds a core, a spinning thread burns it while its partner waits for it, and one
answer took 15x its quiet time beside two busy loops (scripts/busy.py, the README's "A busy machine"). OpenMP reads
its wait policy when its library loads, so this runs before the first `import llama_cpp`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from slm_desk.data.config import RuntimeConfig

POLICY = "OMP_WAIT_POLICY"


def prepare(runtime: RuntimeConfig) -> None:
    """Set [runtime] wait as OpenMP's wait policy, unless the environment already names one or llama.cpp is loaded
    (then the first model's setting stands for the process)."""
    if "llama_cpp" in sys.modules or POLICY in os.environ or runtime.wait == "default":
        return
    os.environ[POLICY] = runtime.wait.upper()


log = logging.getLogger("slm_desk.llama")
_log_callback: Any = None


def quiet_llama_logs() -> None:
    """Send llama.cpp's own log lines to Python logging instead of stderr (stderr is for our diagnostics).

    llama-cpp-python's callback prints whatever its level map calls an error, and that map predates
    llama.cpp's current level numbers, so loading chatter leaks. SLM_DESK_DEBUG=1 shows it all.
    """
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes

    import llama_cpp

    if os.environ.get("SLM_DESK_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.debug(text.decode("utf-8", "replace").rstrip())

    _log_callback = forward  # keep a reference: ctypes does not
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
