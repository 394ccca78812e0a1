"""The reporting side of :mod:`returnn_rf_suite`: ``n/a`` marks, failure groups, the summary and the API table."""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

#: A test whose source matches one of these checks RETURNN-specific machinery: it is run, but marked n/a.
NA_PATTERNS = [
    (r"returnn\.tf\b|TFNetwork|select_backend_returnn_layers_tf",
     "compares against RETURNN's TF net-dict layers (TFNetwork); returnn_ls has no net-dict backend"),
    (r"returnn\.frontend(?:\.| import )_\w+", "tests a RETURNN internal module ({0})"),
    (r"returnn\.config\b|global_config_ctx", "depends on RETURNN's global config (behavior flags)"),
    (r"returnn\.torch\.", "uses RETURNN's own PyTorch engine utilities ({0})"),
]  # fmt: skip

#: Failure groups, tried in order: (group, exception-type regex or None, message regex or None, detail format).
#: The first groups that match by message do so wherever the error was raised; see :func:`classify` for the rest.
GROUPS = [
    ("missing function", None, r"module 'returnn_ls' has no attribute '(\w+)'", "rf.{0}"),
    ("missing function", None, r"returnn_ls has no '?(\w+)|got (\w+)_not_in_returnn_ls", "{0}{1}"),
    ("missing function", r"TypeError", r"unsupported operand type\(s\) for (\S+): '\w+' and 'Tensor'|"
     r"unsupported operand type\(s\) for (\S+): 'Tensor'", "Tensor operator {0}{1}"),
    ("harness limitation", r"HarnessLimitation|TestTimeout", None, "{msg}"),
    ("harness limitation", r"ImportError", r"cannot import name '(\w+)' from 'rf_utils'", "shim lacks {0}"),
    ("harness limitation", r"AttributeError", r"'(OutTensor)' object has no attribute '(\w+)'", "{0}.{1}"),
    ("harness limitation", r"AssertionError", r"isinstance\(tensor\(.*numpy\.ndarray",
     "dim sizes are reference-backend Tensors, not numpy"),
    ("Dim arithmetic", r"TypeError", r"unsupported operand type\(s\) for (\S+): '(?:Dim|int)' and '(?:Dim|int)'",
     "Dim {0}"),
    ("template API", None, r"TensorTemplate", "{msg}"),
    ("missing method/attribute", r"AttributeError", r"'([A-Z]\w*)' object has no attribute '(\w+)'", "{0}.{1}"),
    ("signature difference", r"TypeError", r"([\w.]+)\(\) (?:got an unexpected keyword argument|missing \d+ required"
     r"|takes \d+ positional)", "{0}(): {msg}"),
    ("numerical difference", r"CompareResultsMismatch\w*|NonFiniteValues\w*", None, "{type}"),
]  # fmt: skip

AREAS = {
    "array": ["array_"],
    "base/dims/tensor": ["types", "dims", "const", "dtype", "module", "state", "parameter", "run_ctx", "linear",
                         "matmul", "loss", "dropout", "rand", "device", "backend", "build_from_dict", "parametrize",
                         "parametrizations"],
    "math": ["math_"], "reduce": ["reduce"], "rec": ["rec"], "conv": ["conv"], "container": ["container"],
    "normalization": ["normalization"], "gradient": ["gradient"], "label smoothing": ["label_smoothing"],
    "attention": ["attention"],
    "encoder/decoder": ["encoder/base", "encoder/conformer", "encoder/transformer", "decoder/transformer"],
    "loop/cond": ["loop", "cond"],
}  # fmt: skip
#: Known differences of names returnn_ls has (or deliberately lacks).
NOTES = {
    "Tensor": "wraps a framework tensor: Tensor(raw_tensor, dims, ...); no template form Tensor(name, dims, dtype)",
    "Dim": "matched by identity; Dim(Tensor template) form not supported (the suite's shim adds it)",
    "set_random_seed": "parameters drawn from numpy: same initial values on every backend; dropout/random ops draw "
                       "from each framework's generator (not replayed across backends as RETURNN's random journal)",
    "select_backend_tf": "TF2 backend (eager or in tf.function); RETURNN's is a TF1 graph backend",
    "select_backend_returnn_layers_tf": "n/a: RETURNN's TF net-dict backend",
    "select_backend_numpy": "n/a: no numpy backend",
    "cross_entropy": "also fuses with label_smoothed_log_prob_gradient (one softmax pass)",
    "init_forward_step_run_ctx": "expected_outputs is a TensorDict of returnn_ls tensors",
}  # fmt: skip


def na_reasons(source: str) -> dict[str, str]:
    """:return: per test function of ``source`` that matches :data:`NA_PATTERNS`: why it is n/a"""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            body = ast.get_source_segment(source, node) or ""
            for pattern, reason in NA_PATTERNS:
                m = re.search(pattern, body)
                if m:
                    out[node.name] = reason.format(m.group(0))
                    break
    return out


def classify(entry: dict[str, Any]) -> tuple[str, str]:
    """:return: (group, detail) of a test that did not pass"""
    if entry["outcome"] in ("timeout", "crashed", "not run"):
        return "harness limitation", entry["outcome"]
    etype, msg = entry.get("error_type", ""), entry.get("error", "")
    for group, type_re, msg_re, detail in GROUPS:
        if type_re and not re.fullmatch(type_re, etype or ""):
            continue
        m = re.search(msg_re, msg) if msg_re else None
        if msg_re and not m:
            continue
        args = [g or "" for g in m.groups()] if m else []
        return group, detail.format(*args, msg=msg[:120], type=etype)
    if entry.get("origin") == "harness":
        return "harness limitation", f"{etype}: {msg[:100]}"
    if entry.get("origin") == "returnn_ls":
        return "unsupported case (returnn_ls raises)", f"{etype}: {msg[:100]}"
    if etype == "AssertionError" and entry.get("origin") == "test":
        return "test assertion (behaviour differs)", msg[:100]
    return "other error", f"{etype}: {msg[:100]}"


def count(tests: dict[str, dict]) -> dict[str, int]:
    """:return: the counts of outcomes, n/a tests and passed applicable (not n/a) tests"""
    c = Counter(e["outcome"] for e in tests.values())
    applicable = [e for e in tests.values() if not e.get("na")]
    return {"total": len(tests), **{k: c.get(k, 0) for k in ("passed", "failed", "error", "skipped", "timeout",
            "crashed", "not run")}, "n/a": len(tests) - len(applicable), "applicable": len(applicable),
            "passed_applicable": sum(e["outcome"] == "passed" for e in applicable)}  # fmt: skip


def group_failures(files: dict[str, dict]) -> dict[str, dict]:
    """:return: per failure group (applicable tests only): count, detail counts and examples"""
    out: dict[str, dict] = {}
    for name, res in files.items():
        for test, e in res["tests"].items():
            if "group" not in e or e.get("na"):
                continue
            g = out.setdefault(e["group"], {"count": 0, "details": Counter(), "examples": []})
            g["count"] += 1
            g["details"][e["detail"]] += 1
            if len(g["examples"]) < 8:
                g["examples"].append(f"test_rf_{name}.py::{test}: {e.get('error_type', e['outcome'])}: "
                                     f"{e.get('error', '')[:160]}")  # fmt: skip
    for g in out.values():
        g["details"] = dict(g["details"].most_common())
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["count"]))


def summary_table(result: dict) -> str:
    """:return: a Markdown table of the per-file counts and the failure groups"""
    keys = ["passed", "failed", "error", "skipped", "timeout", "crashed", "not run", "n/a"]
    lines = ["| file | " + " | ".join(keys) + " | total | passed/applicable | s |", "|---" * (len(keys) + 4) + "|"]
    for name, res in [*result["files"].items(), ("all", {"counts": result["totals"], "runtime_s": sum(
            r["runtime_s"] for r in result["files"].values())})]:  # fmt: skip
        c = res["counts"]
        lines.append(f"| {name} | " + " | ".join(str(c[k]) for k in keys)
                     + f" | {c['total']} | {c['passed_applicable']}/{c['applicable']} | {res['runtime_s']:.0f} |")
    na = [f"{f}::{t} ({e['outcome']}): {e['na']}" for f, r in result["files"].items() for t, e in r["tests"].items()
          if e.get("na")]  # fmt: skip
    if na:
        lines += ["\nn/a (run, not counted as applicable):", *(f"- {x}" for x in na)]
    lines.append("\nfailure groups (applicable tests):")
    for group, g in result["failure_groups"].items():
        top = "; ".join(f"{d} x{n}" for d, n in list(g["details"].items())[:6])
        lines.append(f"- {group}: {g['count']} ({top})")
    return "\n".join(lines)


def _module_api(source: str) -> dict[str, list[str] | None]:
    """:return: per public name of a module (its ``__all__``, else its public defs and classes): its parameters"""
    tree = ast.parse(source)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names: list[str] = []
    for n in tree.body:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AugAssign) else []
        if any(getattr(t, "id", None) == "__all__" for t in targets):
            names += [e.value for e in n.value.elts]
    names = names or [k for k in defs if not k.startswith("_")]

    def params(node: Any) -> list[str] | None:
        if isinstance(node, ast.ClassDef):
            node = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
        if not isinstance(node, ast.FunctionDef):
            return None
        a = node.args
        return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]

    return {name: params(defs.get(name)) for name in names}


def check_names(entries: list[list]) -> list[dict[str, Any]]:
    """Look names up in returnn_ls (run in a subprocess, where returnn_ls is the version under test).

    :param entries: ``[qualified name, RETURNN's parameters or None]`` each (``encoder.conformer.X``, also
        looked up as ``X``)
    :return: per entry: whether returnn_ls has it, and the RETURNN parameters its function or class lacks
    """
    import returnn_ls

    out = []
    for name, params in entries:
        obj: Any = None
        for candidate in (name, name.rsplit(".", 1)[-1]):
            obj = returnn_ls
            for part in candidate.split("."):
                obj = getattr(obj, part, None)
            if obj is not None:
                break
        missing: list[str] = []
        if obj is not None and params and callable(obj):
            try:
                ours = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                ours = {}
            if ours and not any(p.kind == p.VAR_KEYWORD for p in ours.values()):
                missing = [p for p in params if p not in ours]
        out.append({"supported": obj is not None, "missing_params": missing})
    return out


def api_rows(read: Callable[[str], str], lookup: Callable[[list[list]], list[dict]]) -> list[dict[str, str]]:
    """:return: one row per public name of RETURNN's frontend in :data:`AREAS`: area, name, returnn_ls, notes
    (from :data:`NOTES`, and the RETURNN parameter names our function or class does not take)

    :param read: gives the text of a path in the RETURNN repository
    :param lookup: :func:`check_names` (e.g. run in a subprocess)
    """
    rows, entries = [], []
    for area, modules in AREAS.items():
        for module in modules:
            prefix = module.replace("/", ".") + "." if "/" in module else ""
            for name, params in _module_api(read(f"returnn/frontend/{module}.py")).items():
                rows.append({"area": area, "name": prefix + name, "notes": NOTES.get(name, "")})
                entries.append([prefix + name, params])
    for row, found in zip(rows, lookup(entries)):
        row["returnn_ls"] = "supported" if found["supported"] else "not supported"
        if found["missing_params"]:
            lacks = "takes no parameter named " + ", ".join(found["missing_params"])
            row["notes"] = f"{row['notes']}; {lacks}" if row["notes"] else lacks
    return rows


def api_table(rows: list[dict[str, str]]) -> str:
    """:return: the Markdown table of :func:`api_rows`, then the counts per area"""
    lines = ["| area | name | returnn_ls | notes |", "|---|---|---|---|"]
    lines += [f"| {r['area']} | `{r['name']}` | {r['returnn_ls']} | {r['notes']} |" for r in rows]
    lines += ["", "| area | supported | not supported |", "|---|---|---|"]
    for area in AREAS:
        c = Counter(r["returnn_ls"] for r in rows if r["area"] == area)
        lines.append(f"| {area} | {c['supported']} | {c['not supported']} |")
    c = Counter(r["returnn_ls"] for r in rows)
    lines.append(f"| all | {c['supported']} | {c['not supported']} |")
    return "\n".join(lines)
