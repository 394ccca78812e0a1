"""The results of ``returnn-ls bench``: ratios, the Markdown table and the plot."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import frontend_backends
from returnn_ls._optional import optional_import
from returnn_ls.bench.cases import ALL_CASES, ALSO_AGAINST, REFERENCE

__all__ = ["LINESTYLES", "add_ratios", "backend_mode_pairs", "format_table", "line_styles", "pair_linestyles", "plot"]

#: The line styles of the (backend, mode) pairs in the plot, given out in the order of
#: :func:`backend_mode_pairs` (and again from the start past the end); the colour is the case's.
LINESTYLES: tuple[Any, ...] = (
    "-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (5, 5)),
    (0, (3, 5, 1, 5)), (0, (5, 1)),
)  # fmt: skip


def _key(row: dict, mode: str, case: str | None) -> tuple:
    """:return: the index key of the row of ``case`` in ``mode`` with the backend, sizes, device and dtype of ``row``"""
    sizes = tuple(row.get(k) for k in ("vocab", "frames", "hidden", "device", "dtype"))
    return row["backend"], mode, case, sizes


def add_ratios(rows: list[dict]) -> None:
    """Add ``reference``, ``time_ratio`` and ``peak_ratio`` to each row: against the row of its reference case
    (:data:`returnn_ls.bench.cases.REFERENCE`) with the same backend, mode, sizes, device and dtype. A row of a case
    of :data:`returnn_ls.bench.cases.ALSO_AGAINST` also gets ``time_ratio_<suffix>`` and ``peak_ratio_<suffix>``
    against each other case there (in the row's mode, or the one named there when it differs from the row's), and
    ``also_against``: suffix -> ``"<mode> <case>"``, where that row exists (e.g. torch's eager ``ours_fused`` gets
    ``time_ratio_vs_compiled`` against compiled ``framework_ls``: the goals are stated so)."""
    index = {_key(r, r["mode"], r["case"]): r for r in rows}
    for r in rows:
        r["reference"] = REFERENCE.get(r["case"])
        ref = index.get(_key(r, r["mode"], r["reference"]))
        r["time_ratio"] = _time_ratio(r, ref)
        r["peak_ratio"] = _ratio(r["peak_mb"], ref and ref["peak_mb"])
        for case, other, mode, suffix in ALSO_AGAINST:
            if r["case"] != case or (mode == r["mode"] and other == r["reference"]):
                continue
            against = index.get(_key(r, mode or r["mode"], other))
            if against is not None:
                r[f"time_ratio_{suffix}"] = _time_ratio(r, against)
                r[f"peak_ratio_{suffix}"] = _ratio(r["peak_mb"], against["peak_mb"])
                r.setdefault("also_against", {})[suffix] = f"{against['mode']} {other}"


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _time_ratio(row: dict, ref: dict | None) -> float | None:
    """:return: the time of ``row`` over that of ``ref``: the median of the per-round ratios when both ran in the
    same rounds (each round runs the cases close together in time), else the ratio of the medians"""
    if ref is None:
        return None
    rounds, ref_rounds = row.get("round_medians") or [], ref.get("round_medians") or []
    if len(rounds) > 1 and len(rounds) == len(ref_rounds):
        return statistics.median(a / b for a, b in zip(rounds, ref_rounds))
    return _ratio(row["time_s"], ref["time_s"])


def _note(r: dict) -> str:
    if r.get("failed"):
        return f"**failed**: {r['failed']}"
    if r.get("skipped"):
        return r["skipped"]
    notes = [
        f"{r[f'time_ratio_{suffix}']:.2f}x time of {against}"
        for suffix, against in (r.get("also_against") or {}).items()
        if r.get(f"time_ratio_{suffix}") is not None
    ]
    return "; ".join(notes)


def format_table(rows: list[dict]) -> str:
    """:return: a Markdown table of ``rows`` (times, peak memory and ratios against the reference case; the note
    has the skip or failure, or the ratios against the other cases of ``ALSO_AGAINST``; then device and dtype)"""

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| backend | mode | vocab | case | time (s) | peak (MB) | vs | time ratio | memory ratio | note | device "
             "| dtype |", "|---|---|---:|---|---:|---:|---|---:|---:|---|---|---|"]  # fmt: skip
    for r in rows:
        peak = num(r["peak_mb"], ".0f")
        if r["peak_mb"] is None and r.get("estimated_peak_mb"):
            peak = f">= {r['estimated_peak_mb']:.0f} (estimated)"
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['vocab']} | {r['case']} | {num(r['time_s'], '.3f')} | {peak} "
            f"| {r.get('reference') or ''} | {num(r.get('time_ratio'), '.2f')} | {num(r.get('peak_ratio'), '.2f')} "
            f"| {_note(r)} | {r.get('device', 'cpu')} | {r.get('dtype', 'float32')} |"
        )
    return "\n".join(lines)


def pair_linestyles(pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """:param pairs: (backend, mode) pairs in plotting order (see :func:`backend_mode_pairs`)
    :return: the line style of each pair: :data:`LINESTYLES` in that order
    """
    return {pair: LINESTYLES[i % len(LINESTYLES)] for i, pair in enumerate(dict.fromkeys(pairs))}


def _kit_modes(backend: str) -> tuple[str, ...]:
    """:return: all execution modes of ``backend`` from its kit (importing its framework), or none if it has no kit
    here (its framework is not installed, or it has no ``Bench``)"""
    try:
        return frontend_backends.bench_kit(backend).execution_modes("all")
    except ValueError:
        return ()


def backend_mode_pairs(rows: list[dict]) -> list[tuple[str, str]]:
    """:return: the (backend, mode) pairs that the line styles are given to: the backends in registry order
    (:func:`frontend_backends.backend_names`, then unregistered ones of ``rows``) up to the last one in ``rows``,
    each with all its modes in its kit's order (then any others of ``rows``), so that a pair keeps its style
    whichever backends and modes ran. A backend without a kit here adds only the modes of its rows."""
    present = list(dict.fromkeys(r["backend"] for r in rows))
    names = list(frontend_backends.backend_names())
    names += [b for b in present if b not in names]
    last = max((names.index(b) for b in present), default=-1)
    pairs = []
    for backend in names[: last + 1]:
        seen = tuple(r["mode"] for r in rows if r["backend"] == backend)
        pairs += [(backend, m) for m in dict.fromkeys(_kit_modes(backend) + seen)]
    return pairs


def line_styles(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    """:return: the matplotlib style of each (backend, mode, case) among ``rows``: the colour is the case's (the
    same on every backend and mode), the line style the backend's and mode's (:func:`pair_linestyles` of
    :func:`backend_mode_pairs`; this asks the backends' kits for their modes, importing their frameworks)"""
    matplotlib = optional_import("matplotlib", "the benchmark's plot")
    ordered = [c for c in ALL_CASES if any(r["case"] == c for r in rows)]
    palette = matplotlib.colormaps["tab10"]
    linestyles = pair_linestyles(backend_mode_pairs(rows))
    return {
        (r["backend"], r["mode"], r["case"]): dict(color=palette(ordered.index(r["case"]) % 10), marker="o",
                                                   linestyle=linestyles[(r["backend"], r["mode"])])
        for r in rows
    }  # fmt: skip


def plot(rows: list[dict], path: str) -> None:
    """Draw time and peak memory against the vocabulary size (log-log), one line per backend, mode and case
    (styles from :func:`line_styles`)."""
    optional_import("matplotlib", "the benchmark's plot").use("Agg")
    plt = optional_import("matplotlib.pyplot", "the benchmark's plot")

    styles = line_styles(rows)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for key, style in styles.items():
        points = sorted((r for r in rows if (r["backend"], r["mode"], r["case"]) == key and r["time_s"] is not None),
                        key=lambda r: r["vocab"])  # fmt: skip
        if not points:
            continue
        for ax, value, floor in zip(axes, ("time_s", "peak_mb"), (1e-3, 1.0)):  # floor: log axes cannot show 0
            ax.plot([p["vocab"] for p in points], [max(p[value] or 0, floor) for p in points], **style,
                    label=f"{key[2]} ({key[0]} {key[1]})")  # fmt: skip
    memory = "peak RSS above baseline" if all(r.get("device", "cpu") == "cpu" for r in rows) else "peak memory"
    for ax, label in zip(axes, ("fwd+bwd time (s, median)", f"{memory} (MB, at least 1)")):
        ax.set(xscale="log", yscale="log", xlabel="vocabulary size", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=6, loc="upper left", ncol=2)
    where = f"{rows[0].get('device', 'cpu')} {rows[0].get('dtype', 'float32')}" if rows else ""
    fig.suptitle(f"label-smoothed CE, {rows[0]['frames']} frames, {where} (colour: case; line style: backend and "
                 "mode)" if rows else "")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
