"""Figures derived from the measurements: rates, ratios to the seed recipe, fractions of the floor,
other work on the machine, the sweeps, the targets and whether they were met, and where a step's
time goes.

Everything here works on the plain result dicts of results.json, so a saved run can be re-analysed.
"""

from __future__ import annotations

import statistics

from benchmarks.workloads import HEADLINE, LAZY_TARGET_VOCAB, SEED_RECIPE as SEED, WORKLOADS

# The targets. CPU, the blog's shape: the faster backend's fit (target and goal), and each
# backend's fit with exact Adam on its own.
SPEEDUP_TARGET, SPEEDUP_GOAL = 5.0, 10.0
FLOOR_TARGET, FLOOR_GOAL = 0.25, 0.70
EACH_FLOOR_TARGET = 0.60  # each fit's fraction of the fastest floor (goal: FLOOR_GOAL)
EACH_SPEEDUP_TARGET = 10.0  # each fit against the seed recipe
# Lazy Adam: fit at V = 2^18 keeps at least this share of its own samples/s at the headline's V.
LAZY_KEEP_TARGET = 0.5
# GPU: steps/s within 2x of the floor at batch 64; "scaling to batch 4096" read as samples/s at
# 4096 at least 16x that at 64 (a step of 64x the rows at most 4x slower) and rising at every size.
GPU_FLOOR_TARGET = 0.5
GPU_SCALING_TARGET = 16.0
JAX_TORCH_PAIRS = (("jax_impl.fit", "torch_ref.fit"), ("jax_impl.step", "torch_ref.step"), ("jax_impl.step-dense", "torch_ref.step-dense"))
FITS = ("torch_ref.fit", "jax_impl.fit")
LAZY_FITS = ("torch_ref.fit+lazy", "jax_impl.fit+lazy")
LAZY_TARGET_WORKLOAD = next(w.name for w in WORKLOADS.values() if w.vocab_size == LAZY_TARGET_VOCAB and "vocab" in w.sweeps)


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


def loaded_threshold(cores: int) -> float:
    """Cores' worth of other work from which a measurement counts as taken under load."""
    return max(0.25, 0.1 * cores)


def other_load(repeat_s: list[float], other_cpu_s: list[float | None], cores: int) -> dict | None:
    """Other processes' CPU use during a measurement's timed repeats, in cores (mean and the worst
    repeat), and whether it passes ``loaded_threshold``; None where it could not be measured."""
    pairs = [(s, o) for s, o in zip(repeat_s, other_cpu_s) if o is not None and s > 0]
    if not pairs:
        return None
    mean = sum(o for _, o in pairs) / sum(s for s, _ in pairs)
    threshold = loaded_threshold(cores)
    return {"cores": mean, "max_cores": max(o / s for s, o in pairs), "threshold": threshold, "loaded": mean > threshold}


def is_loaded(record: dict | None) -> bool:
    return bool(record and (record.get("other_load") or {}).get("loaded"))


def index(records: list[dict]) -> dict[tuple[str, str], dict]:
    """{(workload, variant): record} of the measurements that succeeded."""
    return {(r["workload"], r["variant"]): r for r in records if r.get("error") is None}


def median(record: dict | None, key: str) -> float | None:
    return None if record is None else record[key]["median"]


def samples_ratio(a: dict | None, b: dict | None) -> float | None:
    """a's median samples/s over b's; None where either is missing."""
    if a is None or b is None:
        return None
    return median(a, "samples_per_s") / median(b, "samples_per_s")


def floor_records(found: dict, workload: str) -> list[dict]:
    return [r for (w, _), r in found.items() if w == workload and r["kind"] == "floor"]


def floors_of(found: dict, workload: str) -> dict[str, float]:
    """{backend: floor steps/s} of a workload, with "fastest" the larger."""
    floors = {r["backend"]: median(r, "steps_per_s") for r in floor_records(found, workload)}
    if floors:
        floors["fastest"] = max(floors.values())
    return floors


def add_comparisons(records: list[dict]) -> None:
    """Fill each variant's ratio to the seed recipe and fractions of its own and the fastest floor."""
    found = index(records)
    for record in records:
        if record.get("error") is not None or record["kind"] != "variant":
            continue
        floors = floors_of(found, record["workload"])
        rate = median(record, "steps_per_s")
        record["ratio_to_seed"] = samples_ratio(record, found.get((record["workload"], SEED)))
        record["fraction_of_floor"] = {
            "own": rate / floors[record["backend"]] if record["backend"] in floors else None,
            "fastest": rate / floors["fastest"] if "fastest" in floors else None,
        }


def sweep_points(records: list[dict], workloads: list[dict], sweep: str, axis: str) -> dict[str, list[tuple[int, dict]]]:
    """{variant or floor: [(the workload's ``axis`` value, record), ...]} over the workloads of ``sweep``, ascending."""
    value_of = {w["name"]: w[axis] for w in workloads if sweep in w["sweeps"]}
    lines: dict[str, list] = {}
    for record in records:
        if record.get("error") is None and record["workload"] in value_of:
            lines.setdefault(record["variant"], []).append((value_of[record["workload"]], record))
    return {name: sorted(points, key=lambda p: p[0]) for name, points in lines.items()}


def _lookup(found: dict, pairs) -> tuple[list[dict], list[str]]:
    """The records of (workload, variant) pairs that succeeded, and the names of those that did not."""
    records = [found[p] for p in pairs if p in found]
    return records, [f"{variant} at {workload}" for workload, variant in pairs if (workload, variant) not in found]


def load_note(records: list[dict]) -> str | None:
    """Which of ``records`` were measured under load, and how much other work there was."""
    loaded = [r for r in records if is_loaded(r)]
    if not loaded:
        return None
    return "measured under load: other work took " + ", ".join(
        f"{r['other_load']['cores']:.1f} cores during {label(r)}" for r in loaded)


def label(record: dict) -> str:
    """A measurement in words: its variant (with its method, in the aggregator study) and workload."""
    method = f" with {record['method']}" if record.get("method") else ""
    return f"{record['variant']}{method} at {record['workload']}"


def _target(name: str, value, threshold, goal=None, note: str = "", applies: bool = True, uses=(), missing=()) -> dict:
    """A target: met when ``value`` >= ``threshold``; "not measured" (met None) with why in ``note``."""
    result = {"name": name, "value": None, "threshold": threshold, "goal": goal, "met": None, "goal_met": None, "note": note,
              "load": None}
    if not applies:
        return result
    if value is None:
        result["note"] = note or ("no successful measurement of " + ", ".join(missing) + " in this run (not chosen, left out or failed: see the results)"
                                  if missing else "not measured in this run")
        return result
    result.update(value=value, met=value >= threshold, goal_met=None if goal is None else value >= goal, load=load_note(list(uses)))
    return result


def faster_fit(found: dict, workload: str) -> dict | None:
    fits = [found[(workload, name)] for name in FITS if (workload, name) in found]
    return max(fits, key=lambda r: median(r, "samples_per_s")) if fits else None


def _fraction(record: dict | None) -> float | None:
    return None if record is None else (record.get("fraction_of_floor") or {}).get("fastest")


def targets(records: list[dict], device: str, headline: str = HEADLINE.name, largest_batch: str = "batch4096",
            lazy_at: str = LAZY_TARGET_WORKLOAD) -> list[dict]:
    """The issue's targets, each with its value, threshold, goal, whether it was met, and the load it met."""
    found = index(records)
    best = faster_fit(found, headline)
    who = f" ({best['variant']})" if best else ""
    on_cpu, on_gpu = device == "cpu", device == "gpu"
    cpu_note = "" if on_cpu else "CPU target: not measured on this run (run with --device cpu)"
    gpu_note = "" if on_gpu else "GPU target: not measured on this run (run with --device gpu)"
    floors = floor_records(found, headline)
    seed, no_seed = _lookup(found, [(headline, SEED)])
    fits_missing = _lookup(found, [(headline, f) for f in FITS])[1]
    result = [
        _target(f"CPU: faster backend's fit{who} vs seed-recipe samples/s at the blog's shape", best and best["ratio_to_seed"],
                SPEEDUP_TARGET, SPEEDUP_GOAL, cpu_note, on_cpu, [best, *seed], no_seed + (fits_missing if best is None else [])),
        _target(f"CPU: faster backend's fit{who} as a fraction of the fastest floor", _fraction(best),
                FLOOR_TARGET, FLOOR_GOAL, cpu_note, on_cpu, [best, *floors], fits_missing if best is None else []),
    ]
    for fit in FITS:
        used, missing = _lookup(found, [(headline, fit)])
        record = used[0] if used else None
        result.append(_target(f"CPU: {fit} (exact Adam) as a fraction of the fastest floor at the blog's shape", _fraction(record),
                              EACH_FLOOR_TARGET, FLOOR_GOAL, cpu_note, on_cpu, used + floors, missing))
        result.append(_target(f"CPU: {fit} vs seed-recipe samples/s at the blog's shape", record and record.get("ratio_to_seed"),
                              EACH_SPEEDUP_TARGET, None, cpu_note, on_cpu, used + seed, missing + no_seed))
    for jax_name, torch_name in JAX_TORCH_PAIRS:
        used, missing = _lookup(found, [(headline, jax_name), (headline, torch_name)])
        ratio = samples_ratio(*used) if not missing else None
        result.append(_target(f"{jax_name} / {torch_name} samples/s at the blog's shape", ratio, 1.0, uses=used, missing=missing))
    vocab = f"{WORKLOADS[lazy_at].vocab_size:,}" if lazy_at in WORKLOADS else lazy_at
    for lazy in LAZY_FITS:
        used, missing = _lookup(found, [(lazy_at, lazy), (headline, lazy)])
        ratio = samples_ratio(*used) if not missing else None
        result.append(_target(f"{lazy} samples/s at V = {vocab} / at V = {WORKLOADS[headline].vocab_size:,}", ratio, LAZY_KEEP_TARGET,
                              uses=used, missing=missing))
    result.append(_target(f"GPU: faster backend's fit{who} steps/s as a fraction of the fastest floor at batch 64", _fraction(best),
                          GPU_FLOOR_TARGET, note=gpu_note, applies=on_gpu, uses=[best, *floors], missing=fits_missing))
    largest = found.get((largest_batch, best["variant"])) if best else None
    result.append(_target(f"GPU: samples/s at batch 4096 / at batch 64, faster backend's fit{who}", samples_ratio(largest, best),
                          GPU_SCALING_TARGET, note=gpu_note, applies=on_gpu, uses=[best, largest],
                          missing=[] if largest else [f"the faster fit at {largest_batch}"]))
    return result


def breakdown(records: list[dict], workload: str = HEADLINE.name) -> dict[str, dict[str, float]]:
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
