"""Write every figure in README.md and docs/*.md from the committed artefact it comes from.

    python scripts/docs_figures.py            # rewrite the marked places
    python scripts/docs_figures.py --check    # exit 1, listing them, if any marked place is out of date

A figure in the Markdown is a marked place:

    <!--fig:docs/results/runs/default/metrics.json:test_accuracy:pct-->98.98%<!--/fig-->

naming the artefact (JSON under docs/, relative to the repository), the key inside it (dots for nesting,
numbers for list items) and the format (`FORMATS` below). A whole block can come from a file:

    <!--include:docs/results/table.md-->
    ...the file's text...
    <!--/include-->

and a table from a JSON artefact through a named renderer (`TABLES` below):

    <!--table:bench:docs/bench/NAME.json-->
    ...
    <!--/table-->

tests/unit/test_docs.py runs `--check` in the default suite, and also fails on a figure (a percentage, a
ratio with ×, a rate or a duration) written outside a marked place, so a hand-typed figure cannot land.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/*.md")

FIG = re.compile(r"<!--fig:(?P<src>[^:]+):(?P<key>[^:]+):(?P<fmt>\w+)-->(?P<value>.*?)<!--/fig-->")
BLOCK = re.compile(
    r"<!--(?P<kind>include|table):(?P<spec>[^>]+?)-->\n(?P<body>.*?)<!--/(?P=kind)-->", re.DOTALL
)

FORMATS: dict[str, Callable[[Any], str]] = {
    "pct": lambda v: f"{float(v):.2%}",  # 0.9898 -> 98.98%
    "pct1": lambda v: f"{float(v):.1%}",
    "int": lambda v: f"{int(v):,}",  # 213258 -> 213,258
    "f1": lambda v: f"{float(v):.1f}",
    "f2": lambda v: f"{float(v):.2f}",
    "x2": lambda v: f"{float(v):.2f}×",  # a ratio
    "s0": lambda v: f"{float(v):.0f} s",
    "min1": lambda v: f"{float(v) / 60:.1f} min",
    "kib": lambda v: f"{float(v) / 1024:,.0f} KiB",
    "sci": lambda v: f"{float(v):.1e}",
    "str": str,
}


def lookup(source: str, key: str) -> Any:
    value: Any = json.loads((REPO / source).read_text())
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


# ------------------------------------------------------------------------------------------- tables


def _paired(summary: dict[str, Any] | None) -> str:
    """A summary of paired ratios (mnist_rnn/measure.py): median× [90% interval] verdict."""
    if not summary or summary["median"] is None:
        return "not measured"
    low, high = summary["ci90"]
    return f"{summary['median']:.2f}× [{low:.2f}–{high:.2f}] {summary['verdict']}"


def _bench_table(report: dict[str, Any]) -> str:
    """scripts/bench.py's bench.json (paired slices): per case, each variant's training and eval rate
    (median [min-max]); then mnist-rnn over each other variant: the median of the paired ratios, its 90%
    interval and the verdict."""
    lines = [
        "| case | variant | train samples/s, median [min–max] | eval samples/s, median [min–max] |",
        "|---|---|---|---|",
    ]

    def rate(r: dict[str, float]) -> str:
        return f"{r['median']:,.0f} [{r['min']:,.0f}–{r['max']:,.0f}]"

    for case in report["cases"]:
        for name, v in case["variants"].items():
            train, scored = rate(v["train_samples_per_s"]), rate(v["eval_samples_per_s"])
            lines.append(f"| {case['name']} | {name} | {train} | {scored} |")
    ratios = [
        "| case | mnist-rnn over | training | eval | CPU per sample (theirs / ours) |",
        "|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        for other, p in case["paired"].items():
            label = "itself (A/A)" if other == "mnist_rnn_aa" else other
            ratios.append(
                f"| {case['name']} | {label} | {_paired(p['train'])} | {_paired(p['eval'])} | "
                f"{_paired(p['cpu_per_sample'])} |"
            )
    rounds = f"{report['cases'][0]['rounds']} rounds of paired slices (fewer for the slowest case)"
    machine = report["machine"]
    footer = (
        f"Machine: {machine['cpu']}; TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
        f"PyTorch {machine.get('torch') or 'not installed'}; "
        f"float32 matmul {machine['matmul_gflops']:.0f} GFLOP/s; {rounds}."
    )
    return "\n".join([*lines, "", *ratios, "", footer])


def _export_table(manifests: dict[str, Any]) -> str:
    """docs/results/exports.json: one manifest per export of the default run."""
    lines = [
        "| format | file | size | test accuracy (10,000) | max \\|Δprob\\| vs Keras (1,000) | same class |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in manifests.items():
        (name, size), *_ = m["files"].items()
        lines.append(
            f"| `{label}` | `{name}` | {size / 1024:,.0f} KiB | {m['test_accuracy']:.2%} | "
            f"{m['parity']['max_abs_prob_diff']:.1e} | {m['parity']['same_class_fraction']:.1%} |"
        )
    return "\n".join(lines)


def _literature_table(literature: dict[str, Any]) -> str:
    """docs/results/literature.json: published figures and whether each was checked against its paper."""
    lines = ["| task | model | published test accuracy | source | checked here |", "|---|---|---|---|---|"]
    for r in literature["rows"]:
        lines.append(f"| {r['task']} | {r['model']} | {r['accuracy']:.1%} | {r['source']} | {r['checked']} |")
    return "\n".join(lines)


def serve_load_table(report: dict[str, Any]) -> str:
    """scripts/serve_load.py's JSON: requests/s and p99 per client count, batched over one call per request
    and its A/A, then how throughput grows from the fewest clients to the most (and the A/A server's)."""

    def paired(summary: dict[str, Any]) -> str:
        low, high = summary["ci90"]
        return f"{summary['median']:.2f}× [{low:.2f}–{high:.2f}]"

    lines = [
        "| clients | one call per request, req/s | batched, req/s | batched / one | A/A "
        "| p99 ms, one / batched |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        rate, p99 = r["requests_per_second"], r["p99_ms"]
        lines.append(
            f"| {r['clients']} | {rate['one']:,.0f} | {rate['batched']:,.0f} "
            f"| {paired(r['batched_over_one'])} | {paired(r['aa_batched_again_over_batched'])} "
            f"| {p99['one']:.0f} / {p99['batched']:.0f} |"
        )
    fewest, most = report["scaling"]["clients"]
    first = report["results"][0]
    footer = (
        f"Batched, {most} clients over {fewest}: {paired(report['scaling'])}, {report['scaling']['verdict']} "
        f"{report['scaling']['target']:g}× (the A/A server: {paired(report['scaling_again'])}). "
        f"`serve --workers {report['workers']}`, {first['rounds']} rounds of "
        f"{first['requests_per_round']} requests per variant and client count; {report['cpu']}."
    )
    return "\n".join([*lines, "", footer])


def _profile_table(report: dict[str, Any]) -> str:
    """scripts/profile_vs_torch.py's JSON: per case and side, where a batch's time goes, and the five
    largest operations."""
    lines = [
        "| case | side | wall ms / batch | op ms / batch | matmuls | the rest | waits "
        "| matmul GFLOP/s (share of the machine's) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tops = []
    for r in report["results"]:
        for side in ("mnist_rnn", "torch"):
            v = r[side]
            lines.append(
                f"| {r['case']} | {side} | {v['wall_ms_per_batch']:.1f} | {v['op_ms_per_batch']:.1f} "
                f"| {v['matmul_ms_per_batch']:.1f} ({v['matmul_share_of_op_time']:.0%}) "
                f"| {v['other_ms_per_batch']:.1f} | {v['wait_ms_per_batch']:.1f} "
                f"| {v['matmul_gflops']:.0f} ({v['matmul_gflops_share_of_machine']:.0%}) |"
            )
            top = ", ".join(f"`{name}` {ms:.2f}" for name, ms in list(v["top_ops_ms_per_batch"].items())[:5])
            tops.append(f"- {r['case']}, {side}: {top}")
    first = report["results"][0]
    footer = (
        f"{first['batches']} batches of 128 per case under each side's profiler; machine matmul rate "
        f"{first['machine_matmul_gflops']:.0f} GFLOP/s; {report['machine']['cpu']}. Largest operations, "
        "ms per batch:"
    )
    return "\n".join([*lines, "", footer, "", *tops])


def _threads_table(report: dict[str, Any]) -> str:
    """scripts/threads_probe.py's JSON: ours over PyTorch per process setting, pooled over the processes of
    each setting, and each process's own median (their spread is the A/A); scoring too where measured."""
    labels = report.get("settings", {"one": "1 thread per op", "default": "TensorFlow's default threads"})
    scored = "pooled_eval_ours_over_torch" in report["results"][0][next(iter(labels))]
    columns = ["case", "setting", "training: ours / PyTorch, pooled [90% interval]", "each process's median"]
    columns += ["scoring, pooled", "each process's"] if scored else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]

    def cells(summary: dict[str, Any], medians: list[float]) -> str:
        low, high = summary["ci90"]
        each = ", ".join(f"{m:.2f}" for m in medians)
        return f" {summary['median']:.2f}× [{low:.2f}–{high:.2f}] | {each} |"

    for r in report["results"]:
        for setting, label in labels.items():
            row = r[setting]
            line = f"| {r['case']} | {label} |" + cells(row["pooled_ours_over_torch"], row["process_medians"])
            if scored:
                line += cells(row["pooled_eval_ours_over_torch"], row["eval_process_medians"])
            lines.append(line)
    footer = (
        f"{report['reps']} processes of each setting per case, alternating, {report['rounds']} pairs of "
        f"slices each; {report['machine']['cpu']}."
    )
    return "\n".join([*lines, "", footer])


def _scoring_ab_table(report: dict[str, Any]) -> str:
    """scripts/scoring_ab.py's JSON: per case, this tree's Scorer and Keras's predict over the base commit's,
    this tree's over Keras's, the A/A, and how far the probabilities are from the base's."""
    lines = [
        "| case | images | shards | this over base | Keras over base | this over Keras | A/A | largest "
        "difference from base |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ratios = (r[k] for k in ("this_over_base", "keras_over_base", "this_over_keras", "aa_over_base"))
        difference = r["max_probability_difference_from_base"]["this"]
        lines.append(
            f"| {r['case']} | {r['images']:,} | {r['shards']} | "
            + " | ".join(_paired(s) for s in ratios)
            + f" | {difference:.1e} |"
        )
    footer = f"Base: {report['results'][0]['base']}; {report['rounds']} rounds; {report['machine']['cpu']}."
    return "\n".join([*lines, "", footer])


TABLES: dict[str, Callable[[Any], str]] = {
    "bench": _bench_table, "scoring_ab": _scoring_ab_table, "exports": _export_table,
    "literature": _literature_table, "serve_load": serve_load_table, "profile": _profile_table,
    "threads": _threads_table,
}  # fmt: skip


# ----------------------------------------------------------------------------------------- filling


def fill(text: str) -> str:
    def figure(match: re.Match[str]) -> str:
        value = FORMATS[match["fmt"]](lookup(match["src"], match["key"]))
        return f"<!--fig:{match['src']}:{match['key']}:{match['fmt']}-->{value}<!--/fig-->"

    def block(match: re.Match[str]) -> str:
        kind, spec = match["kind"], match["spec"]
        if kind == "include":
            body = (REPO / spec).read_text().rstrip("\n")
        else:
            renderer, source = spec.split(":", 1)
            body = TABLES[renderer](json.loads((REPO / source).read_text()))
        return f"<!--{kind}:{spec}-->\n{body}\n<!--/{kind}-->"

    return FIG.sub(figure, BLOCK.sub(block, text))


def documents() -> list[Path]:
    return sorted({p for pattern in DOCUMENTS for p in REPO.glob(pattern)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a figure is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        filled = fill(text)
        if filled != text:
            stale.append(path.relative_to(REPO))
            if not args.check:
                path.write_text(filled)
    verb = "out of date" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
