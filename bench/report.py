"""Markdown tables, and writing one section of ``bench/RESULTS.md`` between markers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from bench.loadgen import Result


def table(headers: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt_codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in codes.items()) or "-"


def result_rows(results: list[Result], floor_rps: float | None) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in results:
        ratio = f"{100 * r.rps / floor_rps:.1f}%" if floor_rps else "-"
        rows.append([
            r.name, r.connections, f"{r.rps:,.0f}", f"{r.p50:.1f}", f"{r.p95:.1f}", f"{r.p99:.1f}",
            f"{r.max_ms:.0f}", f"{r.cpu_ms:.2f}", r.errors + r.timeouts, r.non2xx, ratio, fmt_codes(r.codes),
        ])
    return rows


RESULT_HEADERS = ["scenario", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "server CPU ms/req",
                  "socket errors + timeouts", "non-2xx", "% of floor req/s", "status codes (all runs)"]


def result_table(results: list[Result], floor_rps: float | None) -> str:
    return table(RESULT_HEADERS, result_rows(results, floor_rps))


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->`` in
    ``path`` (appended when absent); hand-written text around the markers is kept."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Taskhub benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    found = pattern.search(text)
    text = pattern.sub(lambda _m: block, text) if found else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
