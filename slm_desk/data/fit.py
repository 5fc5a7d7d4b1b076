"""Will a model fit in this machine's memory? Estimated from the file size and the KV cache at our context."""

from __future__ import annotations

from dataclasses import dataclass

from slm_desk.data.gguf_header import ModelShape
from slm_desk.data.hardware import total_memory_bytes

OS_RESERVE = 2**30  # leave the OS and the app a GiB
COMPUTE_OVERHEAD = 0.10  # llama.cpp's compute buffers, roughly a tenth of the weights on CPU


@dataclass(frozen=True)
class FitEstimate:
    file_bytes: int
    kv_bytes: int | None
    n_ctx: int
    available_bytes: int

    @property
    def needed_bytes(self) -> int:
        return int(self.file_bytes * (1 + COMPUTE_OVERHEAD)) + (self.kv_bytes or 0)

    @property
    def fits(self) -> bool:
        return self.available_bytes <= 0 or self.needed_bytes <= self.available_bytes

    def describe(self) -> str:
        gib = 2**30
        kv = (
            f"KV cache {self.kv_bytes / gib:.2f} GiB at n_ctx {self.n_ctx}"
            if self.kv_bytes is not None
            else ("KV cache unknown (header not readable)")
        )
        return (
            f"needs about {self.needed_bytes / gib:.2f} GiB (file {self.file_bytes / gib:.2f} GiB + {kv} + buffers); "
            f"this machine offers {self.available_bytes / gib:.2f} GiB"
        )


def estimate(file_bytes: int, shape: ModelShape | None, n_ctx: int, budget_bytes: int | None = None) -> FitEstimate:
    available = budget_bytes if budget_bytes is not None else max(0, total_memory_bytes() - OS_RESERVE)
    kv = shape.kv_cache_bytes(n_ctx) if shape is not None and shape.layers else None
    return FitEstimate(file_bytes=file_bytes, kv_bytes=kv, n_ctx=n_ctx, available_bytes=available)
