"""How fast the dashboard reads a big sweep, against reading Tune's per-trial result files.

Writes a synthetic sweep of 2,000 trials x up to 10 epochs in sftune's results format (one
parquet file) and, beside it, the same rows in Ray Tune's own layout (one ``result.json`` of JSON
lines per trial directory: what a tool reading Tune's output has to walk). Then it times, in one
run:

- sftune: ``loaders.load_sweep`` (read parquet + one row per trial), the Sweeps-page row,
  learning curves of 20 trials, PED-ANOVA importance;
- baseline: reading the 2,000 ``result.json`` files (json + one DataFrame), then the same
  per-trial table;
- the app's first render in ``AppTest`` (cold cache) and a re-render (warm cache), per page.

Run:  .venv/bin/python bench/dashboard_load.py [--smoke] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard import importance, loaders, space  # noqa: E402 (after the path fix)
from dashboard.synthetic import make_synthetic_sweep  # noqa: E402
from search.results import read_trials  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NOTES = """- `load_sweep_s`: `dashboard.loaders.load_sweep` (sweep.json + trials.parquet + one
  row per trial with outcome and status labels): what the app does on a cache miss. Target: < 2 s.
- `baseline_tune_result_json_s`: the same rows read from one `result.json` per trial directory
  (Ray Tune's layout) with `json.loads` per line and one DataFrame, then the same per-trial table.
  Files are warm in the page cache for both.
- `app *_first_render_s`: `AppTest.run()` of a page with the Streamlit cache cleared (the first
  page also imports plotly and the views); `*_warm_render_s`: the next run, cache warm. AppTest
  times the script, not the browser's drawing.
- `peak RSS`: the benchmark process, which holds both sweeps and the app.
"""
PAGES = ("overview", "sweeps", "hyperparameters", "curves")
ALL_COMPLETED = (1.0, 0.0, 0.0, 0.0, 0.0)


def _timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _write_tune_layout(trials: pd.DataFrame, root: Path) -> Path:
    """The same rows as Tune writes them: <root>/<trial>/result.json, one JSON line per epoch."""
    for trial_id, rows in trials.groupby("trial_id"):
        folder = root / f"run_trial_{trial_id}"
        folder.mkdir(parents=True)
        rows.to_json(folder / "result.json", orient="records", lines=True)
    return root


def _read_tune_layout(root: Path) -> pd.DataFrame:
    """A strong baseline: plain ``json.loads`` per line and one DataFrame at the end (calling
    ``pd.read_json`` per file is about 10x slower still)."""
    records = []
    for path in sorted(root.glob("*/result.json")):
        with path.open() as handle:
            records.extend(json.loads(line) for line in handle)
    return loaders.trial_table(pd.DataFrame.from_records(records))


def _bench_loaders(path: Path, tune_root: Path, repeats: int) -> dict:
    load_s, sweep = _timed(lambda: loaders.load_sweep(path), repeats)
    read_s, _ = _timed(lambda: read_trials(path), repeats)
    row_s, _ = _timed(lambda: loaders.sweep_row(path), repeats)
    picks = loaders.default_curve_trials(sweep.table, n=20)
    curves_s, _ = _timed(lambda: loaders.curves(sweep, picks), repeats)
    dims = space.search_space(sweep.meta)
    imp_s, imp = _timed(lambda: importance.param_importance(sweep.table, dims), 1)
    base_s, base = _timed(lambda: _read_tune_layout(tune_root), max(1, repeats // 2))
    assert len(base) == len(sweep.table)  # both paths produce the same per-trial table
    # Ratio first, then absolute times (timings drift on shared machines; ratios less so).
    return {"speedup_vs_baseline": base_s / load_s, "load_sweep_s": load_s,
            "baseline_tune_result_json_s": base_s, "rows": len(sweep.trials),
            "trials": len(sweep.table), "read_parquet_s": read_s, "sweep_row_s": row_s,
            "curves_20_trials_s": curves_s, "importance_s": imp_s,
            "importance_evaluator": imp.evaluator}


def _bench_app(storage: Path, sweep_name: str) -> dict:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard.launch import APP_PATH

    os.environ["SFTUNE_DASHBOARD_STORAGE"] = str(storage)
    figures = {}
    for page in PAGES:
        st.cache_data.clear()  # each page's first render reads the files itself
        at = AppTest.from_file(str(APP_PATH), default_timeout=120)
        at.query_params.update({"page": page, "sweep": sweep_name})
        start = time.perf_counter()
        at.run()
        figures[f"{page}_first_render_s"] = time.perf_counter() - start
        assert not at.exception and not at.error, (page, at.exception, at.error)
        start = time.perf_counter()
        at.run()
        figures[f"{page}_warm_render_s"] = time.perf_counter() - start
    return figures


def _machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    versions = {"python": platform.python_version()}
    for package in ("pandas", "pyarrow", "streamlit", "plotly", "optuna", "numpy"):
        versions[package] = metadata.version(package)
    return {"cores": os.cpu_count(), "cpu": cpu, "gpu": None, "platform": platform.platform(),
            "versions": versions}


def run(n_trials: int, epochs: int, repeats: int, with_app: bool) -> dict:
    report = {"machine": _machine(), "n_trials": n_trials, "max_epochs": epochs,
              "repeats": repeats, "target_load_s": 2.0, "sweeps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp) / "storage"
        for label, mix in (("mixed outcomes", None), ("all epochs run", ALL_COMPLETED)):
            name = "mixed" if mix is None else "full"
            path = make_synthetic_sweep(storage / name, n_trials=n_trials, epochs=epochs,
                                        outcome_p=mix)
            tune_root = _write_tune_layout(read_trials(path), Path(tmp) / f"tune-{name}")
            report["sweeps"][label] = _bench_loaders(path, tune_root, repeats)
        if with_app:
            report["app"] = _bench_app(storage, "full")
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _table(report: dict) -> str:
    lines = ["| figure | " + " | ".join(report["sweeps"]) + " |",
             "|---|" + "---:|" * len(report["sweeps"])]
    keys = list(next(iter(report["sweeps"].values())))
    for key in keys:
        cells = [_fmt(s[key]) for s in report["sweeps"].values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for key, value in report.get("app", {}).items():
        lines.append(f"| app {key} (full) | {_fmt(value)} |" + " |" * (len(report["sweeps"]) - 1))
    lines.append(f"| peak RSS (MiB) | {report['peak_rss_mib']:.0f} |"
                 + " |" * (len(report["sweeps"]) - 1))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="50 trials, 1 repeat, no files")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--no-app", action="store_true", help="skip the AppTest render timings")
    args = parser.parse_args()
    n_trials, repeats = (50, 1) if args.smoke else (2000, args.repeats)
    report = run(n_trials, 10, repeats, with_app=not args.no_app)
    table = _table(report)
    print(table)
    if not args.smoke:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "dashboard_load.json").write_text(json.dumps(report, indent=2) + "\n")
        command = "python bench/dashboard_load.py" + (" --no-app" if args.no_app else "")
        (RESULTS / "dashboard_load.md").write_text(
            f"# Dashboard load\n\n`{command}` on {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}); times in seconds, median of {repeats}.\n\n"
            f"{table}\n\n{NOTES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
