"""What this machine offers llama.cpp: physical cores, memory, and the build's CPU/GPU features."""

from __future__ import annotations

import os
import platform
import subprocess


def physical_cores() -> int:
    """Physical cores (hyper-threads share an FPU, so llama.cpp runs best with one thread per core)."""
    if platform.system() == "Darwin":
        try:
            return int(subprocess.check_output(["sysctl", "-n", "hw.perflevel0.physicalcpu"], text=True))
        except (OSError, subprocess.CalledProcessError, ValueError):
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cores, physical_id = set(), "0"
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical_id = value.strip()
                elif key == "core id":
                    cores.add((physical_id, value.strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def llama_build_info() -> dict[str, object]:
    """CPU features and GPU offload of the installed llama.cpp build (imports llama_cpp)."""
    import llama_cpp

    features = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": features,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "mmap": bool(llama_cpp.llama_supports_mmap()),
    }
