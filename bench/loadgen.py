"""Run ``wrk`` with ``scenarios.lua`` and parse the JSON line its ``done()`` prints."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "scenarios.lua"


@dataclass
class Run:
    """One wrk run."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    timeouts: int
    codes: dict[str, int]
    load1: float = 0.0  # 1-minute load average before the run (other processes on the machine)
    cpu_ms_per_req: float = 0.0  # server process CPU (user + system) per request answered

    @property
    def non2xx(self) -> int:
        return sum(v for k, v in self.codes.items() if not k.startswith("2"))


@dataclass
class Result:
    """Medians over repeated runs of one scenario on one server configuration."""

    name: str
    connections: int
    runs: list[Run] = field(default_factory=list)

    def _median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))

    @property
    def rps(self) -> float:
        return self._median("rps")

    @property
    def p50(self) -> float:
        return self._median("p50_ms")

    @property
    def p95(self) -> float:
        return self._median("p95_ms")

    @property
    def p99(self) -> float:
        return self._median("p99_ms")

    @property
    def cpu_ms(self) -> float:
        return self._median("cpu_ms_per_req")

    @property
    def max_ms(self) -> float:
        return max(r.max_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.socket_errors for r in self.runs)

    @property
    def timeouts(self) -> int:
        return sum(r.timeouts for r in self.runs)

    @property
    def codes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.runs:
            for k, v in r.codes.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    @property
    def non2xx(self) -> int:
        return sum(r.non2xx for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "connections": self.connections, "rps": self.rps, "p50_ms": self.p50,
            "p95_ms": self.p95, "p99_ms": self.p99, "cpu_ms_per_req": self.cpu_ms, "max_ms": self.max_ms,
            "errors": self.errors,
            "timeouts": self.timeouts, "non2xx": self.non2xx, "codes": self.codes,
            "runs": [r.__dict__ for r in self.runs],
        }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    scenario: str,
    users_file: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    timeout_s: int = 10,
    path: str | None = None,
) -> Run:
    """One wrk run; raises when wrk fails or prints no result line."""
    threads = max(1, min(threads, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           f"--timeout={timeout_s}s", "-s", str(LUA), url, "--", scenario, str(users_file)]
    if path:
        cmd.append(path)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + timeout_s + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()} {proc.stdout[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    lat = data["latency_us"]
    err = data["errors"]
    secs = data["duration_us"] / 1e6
    return Run(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=lat["p50"] / 1000,
        p95_ms=lat["p95"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        socket_errors=err["connect"] + err["read"] + err["write"],
        timeouts=err["timeout"],
        codes={str(k): int(v) for k, v in data["codes"].items()},
    )
