"""Figures derived from the measurements: rates, ratios to the seed recipe, fractions of the floor,
the targets and whether they were met, and where a step's time goes.

Everything here works on the plain result dicts of results.json, so a saved run can be re-analysed.
"""

from __future__ import annotations

import statistics

from benchmarks.context import SEED_RECIPE as SEED

# The targets. CPU: the blog's shape, the library's own fit, the faster backend.
SPEEDUP_TARGET, SPEEDUP_GOAL = 5.0, 10.0
FLOOR_TARGET, FLOOR_GOAL = 0.25, 0.70
# GPU: steps/s within 2x of the floor at batch 64; "scaling to batch 4096" read as samples/s at
# 4096 at least 16x that at 64 (a step of 64x the rows at most 4x slower) and rising at every size.
GPU_FLOOR_TARGET = 0.5
GPU_SCALING_TARGET = 16.0
JAX_TORCH_PAIRS = (("jax_impl.fit", "torch_ref.fit"), ("jax_impl.step", "torch_ref.step"), ("jax_impl.step-dense", "torch_ref.step-dense"))
FITS = ("torch_ref.fit", "jax_impl.fit")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rates(steps: int, repeat_s: list[float], rows_per_step: int) -> dict:
    """steps/s and samples/s (rows of all tasks per second) of each repeat, summarised."""
    steps_per_s = [steps / s for s in repeat_s]
    return {
        "steps_per_s": spread(steps_per_s),
        "samples_per_s": spread([r * rows_per_step for r in steps_per_s]),
        "ms_per_step": statistics.median(s / steps * 1e3 for s in repeat_s),
    }


def index(records: list[dict]) -> dict[tuple[str, str], dict]:
    """{(workload, variant): record} of the measurements that succeeded."""
    return {(r["workload"], r["variant"]): r for r in records if r.get("error") is None}


def median(record: dict | None, key: str) -> float | None:
    return None if record is None else record[key]["median"]


def floors_of(found: dict, workload: str) -> dict[str, float]:
    """{backend: floor steps/s} of a workload, with "fastest" the larger."""
    floors = {}
    for (w, name), record in found.items():
        if w == workload and record["kind"] == "floor":
            floors[record["backend"]] = median(record, "steps_per_s")
    if floors:
        floors["fastest"] = max(floors.values())
    return floors


def add_comparisons(records: list[dict]) -> None:
    """Fill each variant's ratio to the seed recipe and fractions of its own and the fastest floor."""
    found = index(records)
    for record in records:
        if record.get("error") is not None or record["kind"] != "variant":
            continue
        seed = median(found.get((record["workload"], SEED)), "samples_per_s")
        floors = floors_of(found, record["workload"])
        rate = median(record, "steps_per_s")
        record["ratio_to_seed"] = None if not seed else median(record, "samples_per_s") / seed
        record["fraction_of_floor"] = {
            "own": rate / floors[record["backend"]] if record["backend"] in floors else None,
            "fastest": rate / floors["fastest"] if "fastest" in floors else None,
        }


def _target(name: str, value, threshold, goal=None, note: str = "", applies: bool = True) -> dict:
    if not applies:
        return {"name": name, "value": None, "threshold": threshold, "goal": goal, "met": None, "goal_met": None, "note": note}
    if value is None:
        return {"name": name, "value": None, "threshold": threshold, "goal": goal, "met": None, "goal_met": None,
                "note": note or "not measured in this run"}
    return {"name": name, "value": value, "threshold": threshold, "goal": goal, "met": value >= threshold,
            "goal_met": None if goal is None else value >= goal, "note": note}


def faster_fit(found: dict, workload: str) -> dict | None:
    fits = [found[(workload, name)] for name in FITS if (workload, name) in found]
    return max(fits, key=lambda r: median(r, "samples_per_s")) if fits else None


def targets(records: list[dict], device: str, headline: str = "headline", largest_batch: str = "batch4096") -> list[dict]:
    """The issue's targets, each with its value, threshold, goal and whether it was met."""
    found = index(records)
    best = faster_fit(found, headline)
    who = f" ({best['variant']})" if best else ""
    on_cpu, on_gpu = device == "cpu", device == "gpu"
    cpu_note = "" if on_cpu else "a CPU target: run with --device cpu"
    gpu_note = "" if on_gpu else "a GPU target: run with --device gpu on an H100"
    result = [
        _target(f"CPU: faster backend's fit{who} vs seed-recipe samples/s at the blog's shape", best and best["ratio_to_seed"],
                SPEEDUP_TARGET, SPEEDUP_GOAL, cpu_note, on_cpu),
        _target(f"CPU: faster backend's fit{who} as a fraction of the fastest floor", best and best["fraction_of_floor"]["fastest"],
                FLOOR_TARGET, FLOOR_GOAL, cpu_note, on_cpu),
    ]
    for jax_name, torch_name in JAX_TORCH_PAIRS:
        jax_rate = median(found.get((headline, jax_name)), "samples_per_s")
        torch_rate = median(found.get((headline, torch_name)), "samples_per_s")
        ratio = jax_rate / torch_rate if jax_rate and torch_rate else None
        result.append(_target(f"{jax_name} / {torch_name} samples/s at the blog's shape", ratio, 1.0))
    result.append(_target(f"GPU: faster backend's fit{who} steps/s as a fraction of the fastest floor at batch 64",
                          best and best["fraction_of_floor"]["fastest"], GPU_FLOOR_TARGET, note=gpu_note, applies=on_gpu))
    result.append(_target(f"GPU: samples/s at batch 4096 / at batch 64, faster backend's fit{who}",
                          _scaling(found, records, best, headline, largest_batch), GPU_SCALING_TARGET, note=gpu_note, applies=on_gpu))
    return result


def _scaling(found: dict, records: list[dict], best: dict | None, headline: str, largest: str) -> float | None:
    if best is None or (largest, best["variant"]) not in found:
        return None
    return median(found[(largest, best["variant"])], "samples_per_s") / median(best, "samples_per_s")


def breakdown(records: list[dict], workload: str = "headline") -> dict[str, dict[str, float]]:
    """Per backend, ms per step: the Adam floor, the steps on pre-cut batches, fit, and the differences.

    compute (step - floor): forward, backward and the step's own bookkeeping, sparse first layer;
    dense_compute (dense step - floor): the same with a dense first layer;
    batching (fit - step): cutting, converting and moving batches, and the epoch loop.
    """
    found = index(records)
    floors = floors_of(found, workload)
    parts = {}
    for backend, prefix in (("torch", "torch_ref"), ("jax", "jax_impl")):
        if backend not in floors:
            continue
        ms = {name: found[(workload, f"{prefix}.{name}")]["ms_per_step"]
              for name in ("step", "step-dense", "fit") if (workload, f"{prefix}.{name}") in found}
        floor_ms = 1e3 / floors[backend]
        part = {"floor_ms": floor_ms}
        if "step" in ms:
            part.update(step_ms=ms["step"], compute_ms=ms["step"] - floor_ms)
        if "step-dense" in ms:
            part.update(dense_step_ms=ms["step-dense"], dense_compute_ms=ms["step-dense"] - floor_ms)
        if "fit" in ms:
            part["fit_ms"] = ms["fit"]
            if "step" in ms:
                part["batching_ms"] = ms["fit"] - ms["step"]
        parts[backend] = part
    return parts
