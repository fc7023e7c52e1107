"""Run every benchmark under bench/ and write bench/results.json (see shared BENCHMARKS.md).

Each `bench/bench_*.py` module exposes `run() -> list[dict]`; a dict has `metric`, `value`,
`unit`, `target` (e.g. "<= 3" or ">= 200000") and `detail`. This runner adds `verdict`.
A module that crashes still yields its metrics as `fail` with the reason in `detail`.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def verdict(value: float | None, target: str) -> str:
    if value is None:
        return "fail"
    op, _, bound = target.partition(" ")
    limit = float(bound.replace(",", ""))
    ok = value <= limit if op == "<=" else value >= limit if op == ">=" else False
    return "pass" if ok else "fail"


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    only = set(argv)
    results: list[dict[str, Any]] = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and path.stem.removeprefix("bench_") not in only:
            continue
        started = time.perf_counter()
        try:
            metrics = load(path).run()
        except Exception as exc:  # a broken benchmark is reported, never silently dropped
            declared = getattr(sys.modules.get(path.stem), "METRICS", [])
            metrics = [
                {"metric": m, "value": None, "unit": "", "target": t,
                 "detail": {"error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=3)}}
                for m, t in declared
            ] or [{"metric": path.stem, "value": None, "unit": "", "target": "<= 0",
                   "detail": {"error": f"{type(exc).__name__}: {exc}"}}]
        for m in metrics:
            m["verdict"] = verdict(m.get("value"), m["target"])
            m.setdefault("detail", {})["bench_seconds"] = round(time.perf_counter() - started, 2)
            results.append(m)
    machine = {"nproc": __import__("os").cpu_count(), "cpu": _cpu_model(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    for m in results:
        m["detail"].setdefault("machine", machine)
    width = max((len(m["metric"]) for m in results), default=10)
    print(f"{'metric':<{width}}  {'value':>12}  {'unit':<22} {'target':<14} verdict")
    for m in results:
        value = "—" if m["value"] is None else f"{m['value']:,.3f}".rstrip("0").rstrip(".")
        print(f"{m['metric']:<{width}}  {value:>12}  {m['unit']:<22} {m['target']:<14} "
              f"{m['verdict']}")
    out = HERE / "results.json"
    if only and out.exists():
        # A partial run updates its own metrics and keeps the others' last numbers.
        try:
            previous = json.loads(out.read_text())
        except ValueError:
            previous = []
        fresh = {m["metric"] for m in results}
        results = [m for m in previous if m.get("metric") not in fresh] + results
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
