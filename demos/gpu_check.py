"""One prepared check of the CUDA paths on a lent GPU machine: about 7.5 minutes on an H200 (``--budget-s 450``).

    python demos/gpu_check.py --out "$OUT"                          # on the GPU machine, from the repository root
    python demos/gpu_check.py --out /tmp/gpu_quick --quick --device cpu   # the plumbing, tiny sizes, on a CPU
    python demos/gpu_check.py --out /tmp/gpu_dry --dry-run                # only print (and record) the commands

The repository need not be installed: every part is a subprocess with the repository root on ``PYTHONPATH``, and
nothing here needs TensorFlow, h5py, matplotlib or tqdm. ``OUT/gpu_h200.json`` is rewritten after every part (a part
that never ran says ``pending``), so a run cut short still leaves its results; each part's output is in
``OUT/logs/``. The parts, each with a timeout within the budget, each catching its own errors:

- ``environment``: Python, torch, CUDA, Triton, the GPU, which optional packages are installed;
- ``imports``: ``returnn_ls``, ``returnn_ls.bench`` and the torch backend import with TensorFlow, h5py, matplotlib
  and tqdm hidden;
- ``tests``: ``pytest -q tests/gpu tests/test_triton_kernels.py tests/test_triton_linear_ce.py`` (exit code, last
  lines);
- ``bench_*``: ``python -m returnn_ls.bench --device cuda --backends torch --mode all --repeats 10`` at 8192 x 32000
  float32, 8192 x 128256 bfloat16 (label smoothing on the logits, with Liger-Kernel's where installed) and the
  projection 8192 x 4096 x 128256 bfloat16 (with Liger-Kernel's and cut-cross-entropy's); their JSON is embedded;
- ``train``: ``python -m returnn_ls train demos/frame_ce_softmax.config ++num_epochs 2 ++device cuda``. The engine
  imports tqdm for its progress bar even with ``--no-progress`` and matplotlib for its plots: where either is missing
  it runs through a shim that stubs the bar and skips the plots (recorded in the part; ``--quick`` always does).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULT = "gpu_h200.json"
PY = sys.executable
#: Hidden in the ``imports`` part: the GPU machine may not have them.
HIDDEN = ("tensorflow", "h5py", "matplotlib", "tqdm")
OPTIONAL = ("liger_kernel", "cut_cross_entropy", "tensorflow", "h5py", "matplotlib", "tqdm", "returnn", "pytest",
            "hypothesis")  # fmt: skip
LOGIT_CASES = ["plain_ce", "framework_ls", "ours_path_no_smoothing", "ours_path", "ours_fused", "liger_ls"]
LINEAR_CASES = ["linear_framework_ls", "ours_linear_fused", "liger_linear_ls", "cce_linear"]
#: name -> (frames, vocab, hidden, dtype, cases, cap in seconds)
BENCHES = {
    "bench_32000_float32": (8192, 32000, 0, "float32", LOGIT_CASES, 95),
    "bench_128256_bfloat16": (8192, 128256, 0, "bfloat16", LOGIT_CASES, 110),
    "bench_linear_128256_bfloat16": (8192, 128256, 4096, "bfloat16", LINEAR_CASES, 70),
}
#: The same parts at tiny sizes (``--quick``), with fewer subprocesses: the optional cases only show their skips.
QUICK = {"bench_32000_float32": ["ours_fused", "liger_ls"], "bench_128256_bfloat16": ["liger_ls"],
         "bench_linear_128256_bfloat16": ["liger_linear_ls", "cce_linear"]}  # fmt: skip
CAPS = {"environment": 40, "imports": 40, "tests": 120, **{k: v[-1] for k, v in BENCHES.items()}, "train": 50}
#: Seconds kept for each later part when a part's timeout is set.
RESERVE = 20

ENVIRONMENT = """
import importlib.metadata as md, importlib.util, json, platform, sys
import torch
dists = md.packages_distributions()
def version(module):
    names = dists.get(module) or []
    return md.version(names[0]) if names else None
info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "numpy": version("numpy")}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpus=torch.cuda.device_count(), capability=list(torch.cuda.get_device_capability(0)),
                memory_gib=round(p.total_memory / 2**30, 1))
try:
    import triton
    info["triton"] = triton.__version__
except Exception as exc:
    info["triton"] = f"not importable: {type(exc).__name__}: {exc}"
info["packages"] = {m: version(m) or ("installed" if importlib.util.find_spec(m) else None) for m in OPTIONAL}
import shutil, subprocess
if shutil.which("nvidia-smi"):
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv,noheader"]
    info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
print(json.dumps(info))
"""
IMPORTS = """
import importlib, json, sys
for name in HIDDEN:
    sys.modules[name] = None  # as if not installed: importing raises ImportError, find_spec returns None
modules = {}
for module in ("returnn_ls", "returnn_ls.bench", "returnn_ls.bench.runner", "returnn_ls.cli", "frontend_backends.torch",
               "returnn_ls.training.train"):
    try:
        importlib.import_module(module)
        modules[module] = "ok"
    except Exception as exc:
        modules[module] = f"{type(exc).__name__}: {exc}"
where = getattr(sys.modules.get("returnn_ls"), "__file__", None)
print(json.dumps({"hidden": list(HIDDEN), "returnn_ls_from": where, "modules": modules}))
"""
TRAIN_SHIM = """
import importlib.machinery, sys, types
if "tqdm" in MISSING:  # returnn_ls.training.scores.progress_bar imports tqdm even with --no-progress
    class Bar:
        def __init__(self, *args, **kwargs): pass
        def __enter__(self): return self
        def __exit__(self, *exc): return False
        def update(self, n=1): pass
        def set_postfix_str(self, *args, **kwargs): pass
        def close(self): pass
    sys.modules["tqdm"] = stub = types.ModuleType("tqdm")
    stub.tqdm, stub.__spec__ = Bar, importlib.machinery.ModuleSpec("tqdm", None)
if "matplotlib" in MISSING:  # the plots after training need matplotlib
    sys.modules["matplotlib"] = None  # nothing else may import it
    import returnn_ls.training.train as train
    train._plots = lambda metrics, out_dir: None
from returnn_ls.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Check:
    """The run: its options, the budget, the JSON written after every part."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.start = args, time.monotonic()
        self.logs = os.path.join(args.out, "logs")
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
                        PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))  # fmt: skip
        run = "dry-run" if args.dry_run else "quick" if args.quick else "full"
        self.report: dict[str, Any] = {"script": "demos/gpu_check.py", "argv": sys.argv[1:], "run": run,
                                       "device": args.device, "budget_s": args.budget_s, "finished": False,
                                       "parts": {name: {"status": "pending"} for name in CAPS}}  # fmt: skip

    def write(self) -> None:
        """Write the report so far to ``OUT/gpu_h200.json`` (atomically)."""
        self.report["elapsed_s"] = round(time.monotonic() - self.start, 1)
        path = os.path.join(self.args.out, RESULT)
        with open(path + ".part", "w") as f:
            json.dump(self.report, f, indent=1)
        os.replace(path + ".part", path)

    def timeout(self, name: str) -> float:
        """:return: the timeout of part ``name``: its cap, within the budget less a reserve for each later part"""
        later = len(CAPS) - list(CAPS).index(name) - 1
        reserve = min(RESERVE, self.args.budget_s / len(CAPS) / 2)
        return min(CAPS[name], self.args.budget_s - (time.monotonic() - self.start) - reserve * later)

    def run(self, name: str, cmd: list[str], env: dict | None = None) -> dict[str, Any]:
        """Run ``cmd`` from the repository root within part ``name``'s timeout (killing its process group when it
        runs over); :return: the command, exit code, seconds and last lines of its output"""
        shown = [f"<{name} code of demos/gpu_check.py>" if i and cmd[i - 1] == "-c" else c for i, c in enumerate(cmd)]
        record: dict[str, Any] = {"command": shlex.join(shown)}
        print(f"$ {record['command']}", flush=True)
        timeout = self.timeout(name)
        if self.args.dry_run or timeout < 10:
            return dict(record, status="skipped", reason="dry run" if self.args.dry_run else "no time left")
        log = os.path.join(self.logs, f"{name}.log")
        start = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            try:
                code, timed_out = proc.wait(timeout=timeout), False
            except subprocess.TimeoutExpired:
                _kill(proc)
                code, timed_out = proc.wait(), True
            except BaseException:  # Ctrl-C: its own session does not get the signal
                _kill(proc)
                raise
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
        status = "timeout" if timed_out else "ok" if code == 0 else "failed"
        return dict(record, status=status, exit_code=code, timeout_s=round(timeout), seconds=round(
            time.monotonic() - start, 1), log=os.path.relpath(log, self.args.out), tail=lines[-25:])  # fmt: skip

    def python_json(self, name: str, code: str) -> dict[str, Any]:
        """Run Python ``code`` (its last output line is JSON) as part ``name``; :return: the record, with ``result``"""
        record = self.run(name, [PY, "-c", f"HIDDEN, OPTIONAL = {HIDDEN!r}, {OPTIONAL!r}\n{code}"])
        found = [line for line in record.get("tail", []) if line.startswith("{")]
        if record["status"] == "ok" and found:
            record["result"] = json.loads(found[-1])
            record["tail"] = [line for line in record["tail"] if line != found[-1]]
        return record


def _kill(proc: subprocess.Popen) -> None:
    """Kill the process group of ``proc`` (its own session: the command and the subprocesses it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tests(check: Check) -> dict[str, Any]:
    """The ``tests`` part: the Triton kernels' tests (``--quick``: collected only)."""
    paths = [p for p in ("tests/gpu", "tests/test_triton_kernels.py", "tests/test_triton_linear_ce.py")
             if os.path.exists(os.path.join(ROOT, p))]  # fmt: skip
    if not paths:
        return {"status": "skipped", "reason": "none of the CUDA test files exists"}
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "reason": f"pytest is not installed for {PY}"}
    quick = ["--collect-only"] if check.args.quick else []  # --quick: the plumbing only
    return check.run("tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *quick, *paths])


def bench(check: Check, name: str) -> dict[str, Any]:
    """Run one benchmark of :data:`BENCHES` in its own temporary folder (the benchmark's input cache)"""
    frames, vocab, hidden, dtype, cases, _ = BENCHES[name]
    out = os.path.join(check.args.out, name)
    cmd = [PY, "-m", "returnn_ls.bench", "--device", check.args.device, "--backends", "torch", "--no-plot",
           "--dtype", dtype, "--max-memory-gb", "100", "--out", out]  # fmt: skip
    if check.args.quick:
        frames, vocab, hidden, cases = 8, 32, 8 if hidden else 0, QUICK[name]
        cmd += ["--repeats", "1", "--mode", "eager"]
    else:
        cmd += ["--repeats", "10", "--mode", "all"]
    cmd += ["--frames", str(frames), "--vocab", str(vocab), "--cases", *cases]
    cmd += ["--hidden", str(hidden)] if hidden else []
    if not check.args.dry_run and os.path.exists(out + ".json"):
        os.remove(out + ".json")  # of an earlier run
    tmp = tempfile.mkdtemp(prefix="gpu_check_")
    try:
        record = check.run(name, cmd, env=dict(check.env, TMPDIR=tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(out + ".json"):
        with open(out + ".json") as f:
            record["report"] = json.load(f)
    return record


def train(check: Check) -> dict[str, Any]:
    """The ``train`` part: two epochs of a small config on the device (``--quick``: one, through the shim)."""
    out = os.path.join(check.args.out, "train")
    if not check.args.dry_run:
        shutil.rmtree(out, ignore_errors=True)  # an earlier run's checkpoints would be resumed
    epochs = "1" if check.args.quick else "2"
    argv = ["train", "demos/frame_ce_softmax.config", "++num_epochs", epochs, "++device", check.args.device,
            "--out", out, "--no-progress"]  # fmt: skip
    missing = [m for m in ("tqdm", "matplotlib") if check.args.quick or importlib.util.find_spec(m) is None]
    if missing:  # --quick: hidden, to run the shim here
        record = check.run("train", [PY, "-c", f"MISSING = {missing!r}\n{TRAIN_SHIM}", *argv])
        why = "hidden (--quick)" if check.args.quick else "not installed"
        record["shim"] = f"{', '.join(missing)} {why}: the progress bar stubbed, the plots skipped"
    else:
        record = check.run("train", [PY, "-m", "returnn_ls", *argv])
    if os.path.exists(os.path.join(out, "metrics.json")):
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        record["metrics"] = {k: metrics.get(k) for k in ("backend", "device", "history")}
    return record


def summary(report: dict[str, Any]) -> str:
    """:return: one line per part (status, seconds, what it found), and the goal ratios of the benchmarks"""
    lines = [f"{'part':<30} {'status':<8} {'s':>6}  detail"]
    for name, part in report["parts"].items():
        detail = part.get("reason") or part.get("shim") or ""
        if "result" in part:
            result = part["result"]
            detail = ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, (dict, list)))[:100]
            if "modules" in result:
                detail += f", {list(result['modules'].values()).count('ok')}/{len(result['modules'])} modules import"
        rows = part.get("report", {}).get("results", [])
        if rows:
            detail = f"{len(rows)} rows, {sum(bool(r.get('failed')) for r in rows)} failed, complete: " \
                     f"{part['report'].get('complete')}"  # fmt: skip
        detail = detail or (part.get("tail") or [part.get("error", "")])[-1][:100]
        lines.append(f"{name:<30} {part['status']:<8} {part.get('seconds', ''):>6}  {detail}")
        for r in rows:
            against = {r.get("reference"): r.get("time_ratio")}
            against.update({case: r.get(f"time_ratio_{k}") for k, case in (r.get("also_against") or {}).items()})
            text = ", ".join(f"{v:.2f}x {case}" for case, v in against.items() if v is not None)
            if r["case"].startswith("ours") and text:
                lines.append(f"    {r['mode']:<8} {r['case']:<24} time: {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the parts in order, writing the JSON after each; print the summary; :return: 0"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help=f"folder of {RESULT}, the logs and the parts' outputs")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="default cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, fewer cases: the plumbing only")
    parser.add_argument("--dry-run", action="store_true", help="only print (and record) the commands")
    parser.add_argument("--budget-s", type=float, default=450.0, help="seconds for all parts (default 450)")
    args = parser.parse_args(argv)
    args.out = os.path.abspath(args.out)  # the parts run from the repository root
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    check = Check(args)
    check.write()
    parts = {"environment": lambda: check.python_json("environment", ENVIRONMENT),
             "imports": lambda: check.python_json("imports", IMPORTS), "tests": lambda: tests(check)}  # fmt: skip
    parts.update({name: (lambda name=name: bench(check, name)) for name in BENCHES})
    parts["train"] = lambda: train(check)
    for name, part in parts.items():
        try:
            check.report["parts"][name] = part()
        except Exception as exc:  # a part's own error is its result; the next part still runs
            check.report["parts"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        check.write()
    check.report["finished"] = True
    check.write()
    print(summary(check.report))
    print(f"wrote {os.path.join(args.out, RESULT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
