"""Where and on what the numbers were measured: the device both backends run on (pinning,
synchronising, peak memory), and the machine, libraries, thread pools and matmul precision.

Every variant takes a ``Device``: the same code runs on the CPU and on a GPU, so the GPU path is the
CPU path with another device in it. torch and jax are imported inside the functions: jax's platform
must be chosen through the environment before jax is first imported, and run.py checks its
arguments before importing either.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any

DEVICES = ("cpu", "gpu")
PRECISIONS = ("highest", "tf32")


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used; the message names what is missing."""


def pin_platform(kind: str) -> None:
    """Choose jax's platform before jax is imported.

    ``cpu`` hides any GPU from jax (JAX_PLATFORMS=cpu): a GPU machine measured with --device cpu must
    not run jax on its GPU, nor let jax grab GPU memory. ``gpu`` turns off jax's up-front grab of 75%
    of the GPU memory, since torch runs on the same GPU in the same process.
    """
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {kind!r}")
    if kind == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


@dataclass(frozen=True)
class Device:
    """Where both backends run: ``torch`` is a torch.device, ``jax`` a jax Device.

    A process that runs one backend only (a worker of the scaling study) leaves the other None.
    """

    kind: str
    torch: Any
    jax: Any
    precision: str

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def torch_sync(self) -> None:
        """Wait for queued torch work (a no-op on the CPU, where torch runs synchronously)."""
        if self.is_gpu and self.torch is not None:
            import torch

            torch.cuda.synchronize(self.torch)

    def reset_peak_memory(self) -> None:
        if self.is_gpu and self.torch is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.torch)

    def memory(self) -> dict[str, float | None]:
        """Device memory in MiB: torch's peak since the last reset, jax's peak since start-up.

        jax cannot reset its peak, so its figure is the largest of all variants run so far.
        """
        found = {"torch_peak_mib": None, "jax_peak_mib": None, "jax_in_use_mib": None}
        if not self.is_gpu:
            return found
        mib = lambda n: None if n is None else n / 2**20  # noqa: E731 - a unit conversion
        if self.torch is not None:
            import torch

            found["torch_peak_mib"] = mib(torch.cuda.max_memory_allocated(self.torch))
        if self.jax is not None:
            stats = self.jax.memory_stats() or {}
            found.update(jax_peak_mib=mib(stats.get("peak_bytes_in_use")), jax_in_use_mib=mib(stats.get("bytes_in_use")))
        return found

    def describe(self) -> dict[str, Any]:
        import torch

        info = {"kind": self.kind, "torch": str(self.torch), "jax": f"{self.jax.platform}:{self.jax.id} ({self.jax.device_kind})"}
        if self.is_gpu:
            info["name"] = torch.cuda.get_device_name(self.torch)
            info["cuda"] = torch.version.cuda
            info["jax_platform_version"] = getattr(getattr(self.jax, "client", None), "platform_version", None)
        return info


def torch_device(kind: str):
    """The torch device of ``kind`` (the first visible GPU for "gpu"), or DeviceUnavailable."""
    import torch

    if kind == "cpu":
        return torch.device("cpu")
    if not torch.backends.cuda.is_built():
        raise DeviceUnavailable(f"torch {torch.__version__} was built without CUDA")
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise DeviceUnavailable("torch finds no CUDA device")
    return torch.device("cuda", 0)


def jax_devices(kind: str) -> list:
    """jax's devices of ``kind`` (all of them, in jax's order), or DeviceUnavailable."""
    import jax

    platform = "cpu" if kind == "cpu" else "gpu"
    # jax logs a warning when it looks for a GPU backend that is not installed: the error says it.
    logger = logging.getLogger("jax._src.xla_bridge")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return jax.devices(platform)
    except RuntimeError:
        pinned = os.environ.get("JAX_PLATFORMS")
        hint = f" (JAX_PLATFORMS={pinned})" if pinned else ""
        raise DeviceUnavailable(f"jax has no GPU backend{hint}; its platforms: {sorted({d.platform for d in jax.devices()})}") from None
    finally:
        logger.setLevel(level)


def _jax_device(kind: str):
    return jax_devices(kind)[0]


def gpu_count() -> int:
    """GPUs that both backends see (call after open_device("gpu") succeeded)."""
    import torch

    return min(torch.cuda.device_count(), len(jax_devices("gpu")))


def set_precision(precision: str, backends: tuple[str, ...] = ("torch", "jax")) -> None:
    """float32 matmul precision of the named backends (see open_device)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if "jax" in backends:
        import jax

        jax.config.update("jax_default_matmul_precision", "highest" if precision == "highest" else "tensorfloat32")
    if "torch" in backends:
        import torch

        torch.set_float32_matmul_precision("highest" if precision == "highest" else "high")


def open_device(kind: str, precision: str = "highest") -> Device:
    """The device for ``kind``, or DeviceUnavailable naming everything that is missing.

    ``precision`` sets float32 matmuls of both backends alike: "highest" is full float32 (torch's
    default; jax's default on an H100 is TF32), "tf32" lets both use TF32 tensor cores on a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    missing, devices = [], {}
    for name, find in (("torch", torch_device), ("jax", _jax_device)):
        try:
            devices[name] = find(kind)
        except DeviceUnavailable as error:
            missing.append(str(error))
    if missing:
        raise DeviceUnavailable(f"--device {kind} is unusable: " + "; ".join(missing))
    set_precision(precision)
    return Device(kind=kind, torch=devices["torch"], jax=devices["jax"], precision=precision)


# --- the machine, libraries and threads ---------------------------------------------------------

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


def _meminfo_gib(key: str) -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def memory_gib() -> float | None:
    return _meminfo_gib("MemTotal")


def available_memory_gib() -> float | None:
    """Memory the kernel could give this process now without swapping (MemAvailable), None without /proc."""
    return _meminfo_gib("MemAvailable")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    """torch's intra-op pool size (its OpenMP threads spin-wait at every parallel op)."""
    import torch

    torch.set_num_threads(count)


def describe() -> dict:
    """The environment block of results.json; call it after the run so that jax's pools exist."""
    import jax
    import torch

    return {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "usable_cores": usable_cores(),
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
