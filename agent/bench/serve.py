"""How model-driven task files scale with ``--concurrency`` against one shared model server.

Writes K task files that each start xcalc on their display and ask the model M ``query``
questions about it, then runs all K with ``deskpilot run --headless --concurrency N --backend
openai`` for each N (default 1, 2, 4), every run against the same server, and prints per N the
wall time, the model steps completed, model steps per second and the speed-up over N=1.

Without ``--base-url`` it starts ``python -m llama_cpp.server`` on loopback with the tiny
random-weight pair (models/serve_local.py): the figures then measure deskpilot's side (process
and display start-up, capture, JPEG, HTTP) and how it overlaps, not a real model. That server
answers one request at a time (it has no parallel slots), so model calls queue and the
speed-up comes from overlapping everything else. Point ``--base-url`` (and ``--model``, the
served name) at ``llama-server --parallel N`` or vLLM on a GPU to measure real serving.
Answers are greedy (temperature 0); a query passes with any well-formed value, so random
weights do not fail the tasks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TASK = """\
name: bench reads {index}
setup:
  launch:
    - command: xcalc -geometry +400+150
      wait_for: {{window: Calculator}}
steps:
"""
QUERY = "  - query: {{ask: \"the number on the calculator's display\", save_as: value{n}}}\n"


class BenchError(RuntimeError):
    """The benchmark cannot run here."""


def write_tasks(directory: Path, tasks: int, queries: int) -> list[Path]:
    """``tasks`` task files of ``queries`` model steps each."""
    files = []
    for i in range(1, tasks + 1):
        path = directory / f"bench-{i:02d}.yaml"
        path.write_text(TASK.format(index=i) + "".join(QUERY.format(n=n)
                                                       for n in range(1, queries + 1)))
        files.append(path)
    return files


def model_steps(summary: dict[str, Any]) -> int:
    """Model steps the run completed: each answered ``query``/``check``/target click, and each
    agent step of a ``do``."""
    count = 0
    for task in summary["tasks"]:
        if not task["run_dir"]:
            continue
        lines = (Path(task["run_dir"]) / "steps.jsonl").read_text().splitlines()
        for step in map(json.loads, lines):
            if step["kind"] == "do":
                count += len(step["agent_steps"])
            elif step["source"] == "model" and step["model_text"]:
                count += 1
    return count


def run_level(files: Sequence[Path], n: int, *, base_url: str, model: str, work: Path,
              timeout_s: float) -> dict[str, Any]:
    """Run every file at concurrency ``n``; the figures of that run."""
    out = work / f"n{n}"
    out.mkdir()
    summary = out / "summary.json"
    argv = [sys.executable, "-P", "-m", "deskpilot", "run", *map(str, files),
            "--headless", "--xvfb",
            "--concurrency", str(n), "--backend", "openai", "--base-url", base_url,
            "--model", model, "--temperature", "0", "--cache", "off",
            "--runs-dir", str(out / "runs"), "--summary", str(summary)]
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    t0 = time.monotonic()
    with (out / "console.log").open("wb") as console:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=console,
                              stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False)
    wall = time.monotonic() - t0
    if not summary.is_file():
        raise BenchError(f"the run at --concurrency {n} exited {done.returncode} without a "
                         f"summary; see {out / 'console.log'}")
    data = json.loads(summary.read_text())
    steps = model_steps(data)
    log.info("concurrency %d: %.1f s, %d model steps", n, wall, steps)
    return {"concurrency": n, "wall_s": round(wall, 2), "exit_code": done.returncode,
            "counts": data["counts"], "model_steps": steps,
            "model_steps_per_s": round(steps / wall, 3) if wall > 0 else None}


def bench_serve(*, tasks: int = 8, queries: int = 2, levels: Sequence[int] = (1, 2, 4),
                base_url: str | None = None, model: str | None = None,
                work_dir: Path | None = None, timeout_s: float = 900.0) -> dict[str, Any]:
    """Run the same task files at each concurrency level against one server."""
    missing = [p for p in ("Xvfb", "xcalc", "xdotool") if shutil.which(p) is None]
    if missing:
        raise BenchError(f"needs {', '.join(missing)} (Debian: apt-get install xvfb x11-apps "
                         "xdotool)")
    if base_url is not None and not model:
        raise BenchError("--base-url needs --model, the name the server serves the model under")
    with ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dp-serve-")))
        else:
            work = work_dir
            work.mkdir(parents=True, exist_ok=True)
        if base_url is None:
            from deskpilot.models.serve_local import PARALLEL_SLOTS, local_server

            server = stack.enter_context(local_server(work / "server"))
            base_url, model = server.base_url, server.model
            about: dict[str, Any] = {
                "kind": "python -m llama_cpp.server (llama-cpp-python), tiny random-weight "
                        "pair, CPU", "parallel_slots": PARALLEL_SLOTS,
                "note": "llama_cpp.server has no parallel slots (no --n-parallel option): it "
                        "answers one request at a time, so concurrent sessions queue for the "
                        "model; use llama-server --parallel N or vLLM for parallel decoding"}
        else:
            about = {"kind": "given by --base-url", "base_url": base_url}
        assert model is not None
        files = write_tasks(work, tasks, queries)
        runs = [run_level(files, n, base_url=base_url, model=model, work=work,
                          timeout_s=timeout_s) for n in levels]
    base = runs[0]["wall_s"]
    for run in runs:
        run["speedup_vs_baseline"] = round(base / run["wall_s"], 2) if run["wall_s"] else None
    return {"server": about, "tasks": tasks, "model_steps_per_task": queries,
            "cpu_cores": os.cpu_count(), "levels": runs,
            "baseline": f"--concurrency {levels[0]}"}


def _levels(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("every level must be at least 1")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its figures as JSON."""
    from deskpilot.models.serve_local import ServerError

    parser = argparse.ArgumentParser(
        prog="deskpilot bench serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__)
    parser.add_argument("--tasks", type=int, default=8, metavar="K",
                        help="task files run at every level (default 8)")
    parser.add_argument("--queries", type=int, default=2, metavar="M",
                        help="model steps (query) in each task file (default 2)")
    parser.add_argument("--levels", type=_levels, default=[1, 2, 4], metavar="N,N,...",
                        help="the --concurrency values to run, the first being the baseline "
                             "of the speed-up (default 1,2,4)")
    parser.add_argument("--base-url", metavar="URL",
                        help="use this OpenAI-compatible server instead of starting "
                             "llama_cpp.server with the tiny model (e.g. llama-server "
                             "--parallel 4 at http://127.0.0.1:8080/v1)")
    parser.add_argument("--model", metavar="NAME",
                        help="with --base-url, the name the server serves the model under")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="keep the task files, runs, logs and server log here (default: a "
                             "temporary directory, removed afterwards)")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="S",
                        help="give up on one level's run after S seconds (default 900)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.queries < 1:
        parser.error("--tasks and --queries must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        figures = bench_serve(tasks=args.tasks, queries=args.queries, levels=args.levels,
                              base_url=args.base_url, model=args.model,
                              work_dir=args.work_dir, timeout_s=args.timeout)
    except (BenchError, ServerError) as exc:
        parser.exit(2, f"deskpilot bench serve: {exc}\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
