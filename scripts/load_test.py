"""Loopback load test of the aligning proxy on the inspector-only path.

Starts two real servers on 127.0.0.1 as subprocesses: an upstream ``aligners serve --plain``
serving a tiny random Llama (so the upstream costs milliseconds and the proxy's own cost shows),
and the proxy ``aligners serve`` with the default squad (MiniLM inspectors) at threshold 0, so every
answer passes the inspectors and no aligner runs. Then it sends a bounded number of chat
completions at several concurrency levels, to the upstream directly (baseline) and through the
proxy, and reports requests/s and latency percentiles.

    python scripts/load_test.py --requests 200 --concurrency 1,4,16 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Proxy load test"
QUESTIONS = [
    "What is the capital of France?",
    "How do I bake bread at home?",
    "Can you explain what a squad of aligners does?",
    "What is a good way to learn Python?",
    "How can I keep my neighbour's dog from barking at night?",
    "Why is the sky blue?",
    "Summarise the plot of Hamlet in one sentence.",
    "What should I pack for a weekend hike?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    env = {k: v for k, v in os.environ.items() if k != "ALIGNERS_API_KEY"}  # no key on loopback
    return subprocess.Popen(
        [sys.executable, "-m", "aligners.cli.main", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s; see {log}")


async def run_level(
    base_url: str, model: str, concurrency: int, requests: int, max_tokens: int, proxy: bool
) -> dict[str, Any]:
    """Send ``requests`` chat completions with ``concurrency`` workers; latency per request."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(i: int) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                "max_tokens": max_tokens,
            }
            start = time.perf_counter()
            response = await client.post(f"{base_url}/chat/completions", json=body)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            data = response.json()
            if proxy and data.get("aligners", {}).get("applied") != []:
                errors.append(f"not the inspector-only path: {data.get('aligners')}")
                return
            latencies.append(elapsed)

        async def worker() -> None:
            for i in counter:
                await one(i)

        for i in range(min(8, requests)):  # warm-up: connections, first-call caches
            await one(i)
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    import numpy as np

    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": len(latencies) / wall if wall > 0 else float("nan"),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU, Python {platform.python_version()}"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def markdown(
    results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, info: dict[str, str]
) -> str:
    lines = [
        SECTION,
        "",
        "Written by `scripts/load_test.py` (issue 6). Loopback only (127.0.0.1), bounded: "
        f"{args.requests} requests per row after 8 warm-up requests.",
        "",
        f"- Command: `{info['command']}`",
        f"- Date (UTC): {info['date']}; machine: {info['machine']}",
        "- Load average before / after (1, 5, 15 min): "
        f"{info['load_before']} / {info['load_after']} (other jobs shared this machine; treat "
        "absolute numbers as a floor)",
        "- Upstream: `aligners serve --plain` with a tiny random 2-layer Llama "
        f"(`max_tokens={args.max_tokens}`), its own process.",
        "- Proxy: `aligners serve --upstream-url ... --threshold 0` with the default squad "
        "(ethical, factuality, helpful; MiniLM inspectors sharing one encoder pass), its own "
        "process. Threshold 0: every answer passes, no aligner runs (the inspector-only path); "
        "the script checks `aligners.applied == []` on every reply.",
        "- Client: httpx.AsyncClient, N concurrent workers, in a third process.",
        "",
        "| target | concurrency | ok / requests | errors | requests/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target, rows in results.items():
        for r in rows:
            lines.append(
                f"| {target} | {r['concurrency']} | {r['ok']} / {r['requests']} | {r['errors']} | "
                f"{r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |"
            )
    lines += [
        "",
        "`upstream direct` is the same request straight to the upstream server; the gap is the "
        "proxy's cost (one more HTTP hop, one MiniLM pass over question and answer, three small "
        "heads). Concurrent proxy requests share squad batches, so at higher concurrency the "
        "proxy's throughput follows its upstream's. The two servers and the client share 2 CPU "
        "cores with other jobs (see the load average), so repeated runs vary by tens of percent: "
        "compare rows of one run, not across runs.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace this script's section in ``path`` (or append it), leaving the rest untouched."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="Requests per concurrency level.")
    parser.add_argument("--concurrency", default="1,4,16", help="Comma-separated levels.")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--write-docs", type=Path, default=None, help="Update this markdown file.")
    parser.add_argument("--json", type=Path, default=None, help="Also write raw results here.")
    args = parser.parse_args()
    if args.requests < 1 or args.requests > 5000:
        parser.error("--requests must be in 1..5000 (the test is bounded)")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1 or max(levels) > 64:
        parser.error("--concurrency levels must be in 1..64")

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_causal_lm  # the tests' tiny random model, built offline

    info = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": machine(),
        "load_before": load_average(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny_causal_lm(work / "tiny")
        up_port, proxy_port = free_port(), free_port()
        up_url, proxy_url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{proxy_port}"
        upstream = start(
            [
                "serve",
                "--plain",
                "--model",
                str(model_dir),
                "--served-model-name",
                "tiny",
                "--port",
                str(up_port),
                "--log-level",
                "warning",
            ],
            work / "upstream.log",
        )
        proxy = start(
            [
                "serve",
                "--port",
                str(proxy_port),
                "--upstream-url",
                f"{up_url}/v1",
                "--upstream-model",
                "tiny",
                "--threshold",
                "0",
                "--log-level",
                "warning",
            ],
            work / "proxy.log",
        )
        try:
            wait_ready(up_url, upstream, work / "upstream.log")
            wait_ready(proxy_url, proxy, work / "proxy.log")
            results: dict[str, list[dict[str, Any]]] = {"upstream direct": [], "proxy": []}
            for level in levels:
                for target, url, model, is_proxy in (
                    ("upstream direct", up_url, "tiny", False),
                    ("proxy", proxy_url, "aligners", True),
                ):
                    row = asyncio.run(
                        run_level(
                            f"{url}/v1", model, level, args.requests, args.max_tokens, is_proxy
                        )
                    )
                    results[target].append(row)
                    print(json.dumps({"target": target, **row}), flush=True)
        finally:
            for proc in (upstream, proxy):
                proc.kill()
                proc.wait()
    info["load_after"] = load_average()
    section = markdown(results, args, info)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")
    if args.write_docs:
        write_section(args.write_docs, section)
        print(f"updated {args.write_docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
