"""What the numbers were measured on: machine, libraries, thread pools, matmul precision."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import jax
import torch

LIBRARIES = ("torch", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib", "tqdm")
# jax's CUDA plugins, named only where installed: their version matters for GPU scatter-adds.
GPU_PLUGINS = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt", "triton")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "XLA_FLAGS", "JAX_PLATFORMS", "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES + GPU_PLUGINS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in LIBRARIES:
                found[name] = "not installed"
    return found


def xla_eigen_threads() -> int | None:
    """Threads of XLA's CPU pool, counted by name (jax exposes no setting for it); None before jax ran."""
    try:
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    except OSError:
        return None
    return sum("XLAEigen" in name for name in names) or None


def blas() -> str:
    """numpy's BLAS and its threads, through threadpoolctl where it is installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    numpy_first = sorted(pools, key=lambda p: "numpy" not in p.get("filepath", ""))
    return "; ".join(
        f"{_owner(p.get('filepath', ''))}: {p.get('internal_api')} {p.get('version')} "
        f"({p.get('architecture', '?')} kernels, {p.get('num_threads')} threads)"
        for p in numpy_first
    ) or "none found"


def _owner(path: str) -> str:
    """The package that ships a BLAS library, from its path (numpy.libs/..., scipy.libs/...)."""
    for part in reversed(path.split(os.sep)):
        if part.endswith(".libs") or part in ("lib", "site-packages"):
            return part.removesuffix(".libs") if part.endswith(".libs") else "system"
    return "system"


def set_torch_threads(count: int) -> None:
    """torch's intra-op pool size. Its OpenMP threads spin-wait at every parallel op, which costs
    dearly when other processes hold the cores."""
    torch.set_num_threads(count)


def describe() -> dict:
    """The environment block of results.json; call it after the run so that jax's pools exist."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "usable_cores": usable,
            "memory_gib": memory_gib(),
        },
        "libraries": versions(),
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "xla_eigen": xla_eigen_threads(),
            "blas": blas(),
            "variables": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        },
        "precision": {
            "torch": torch.get_float32_matmul_precision()
            + (f", cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}" if torch.cuda.is_available() else ""),
            "jax": jax.config.jax_default_matmul_precision or "default",
        },
    }
