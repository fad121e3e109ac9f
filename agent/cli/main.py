"""The ``deskpilot`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deskpilot.actions.categories import ALLOW_NAMES
from deskpilot.agent import argtypes
from deskpilot.agent.cli.console import say
from deskpilot.agent.cli.errors import EXIT_OK, EXIT_USAGE, UserError, exit_for_interrupt
from deskpilot.agent.cli.options import (
    DEFAULT_MODEL_TIMEOUT_S,
    DEFAULT_SCREEN_SIZE,
    TINY_SHAPE_FLAGS,
    TINY_TEMPERATURE,
    ask_options,
    models_options,
    run_options,
)
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.agent.takeover import DEFAULT_KILL_HOTKEY
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.grounding.preprocess import DEFAULT_MAX_PATCHES, DEFAULT_MIN_PATCHES
from deskpilot.models.choice import BACKENDS, CONSTRAINTS, ModelChoice
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Mode

if TYPE_CHECKING:
    from deskpilot.agent.cli.options import RunOptions

_BUDGET, _SETTINGS, _MODEL = Budget(), ModelSettings(), ModelChoice()  # the defaults, once

_EPILOG = """\
examples:
  deskpilot doctor                         check display, input, llama.cpp and model files
  deskpilot models list                    known models and whether they are on disk
  deskpilot models pull phi4rv-15b-q4km    download the model (about 10 GB)
  deskpilot run "open the calculator menu" --model tiny --max-steps 3
                                           try the loop with a tiny random-weight model
  deskpilot run "rename report.txt to report.pdf" --dry-run
                                           decide actions but do not touch mouse/keyboard
  deskpilot demo                           replay a recorded xcalc run on a private display
  deskpilot run examples/*.yaml --headless --junit junit.xml --report report/
                                           task files as UI tests on a private display
  deskpilot bench overhead                 the agent's own cost per step, against a naive loop

Every run writes a private directory with trajectory.jsonl and the screenshots
(default ~/.local/state/deskpilot/runs; --runs-dir or $DESKPILOT_RUNS to change).
On an interactive terminal a task in words opens the supervision interface: the live
screen with the next click marked, the steps, the model's text as it comes. Keys: space
pause/resume, s step-once (n runs the next action), a approve each action, h hint for the
next step, x stop, q quit (--no-tui prints plain lines instead).
Hands off: touch the mouse or keyboard and the agent stops before its next action (in the
interface it waits until you press space).
Kill switch: Ctrl+Alt+K from anywhere (--kill-key), Ctrl+C in this terminal, or move the
mouse into a screen corner.
"""

_RUN_EPILOG = """\
with a model server (one model shared by many sessions; docs/scaling.md):
  llama-server -m MODEL.gguf --mmproj MMPROJ.gguf --parallel 4 -c 32768 --port 8080
  deskpilot run tasks/*.yaml --headless --backend openai \\
      --base-url http://127.0.0.1:8080/v1 --model phi4rv
--model names the served model; --base-url defaults to $DESKPILOT_BASE_URL; an API key
comes from $DESKPILOT_API_KEY or $OPENAI_API_KEY and is never logged. For vLLM (no GBNF)
add --constraint json_schema.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help)."""
    p = argparse.ArgumentParser(
        prog="deskpilot", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A local desktop agent: it looks at the screen, asks "
                    "Phi-4-reasoning-vision (running on this machine) what to do, and acts "
                    "with the mouse and keyboard. Screenshots never leave the machine.",
        epilog=_EPILOG)
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and llama.cpp's)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_run(sub)

    models = sub.add_parser("models", help="list, download, verify or make model files")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="known models and whether their files are present")
    pull = msub.add_parser("pull", help="download a model (resumable, checksum verified)")
    pull.add_argument("name", help="catalog name (see `deskpilot models list`)")
    verify = msub.add_parser("verify", help="check sizes and checksums of downloaded files")
    verify.add_argument("--record", action="store_true",
                        help="hash files copied in by hand and pin them in the lock file")
    tiny = msub.add_parser("make-tiny", help="write a tiny random-weight model pair "
                                             "(for tests and benchmarks; it answers nonsense)")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--real-shape", action="store_true",
                      help="use the real 15B dimensions (large; for GPU benchmarks)")
    tiny.add_argument("--seed", type=int, default=0)
    for name in TINY_SHAPE_FLAGS:
        tiny.add_argument(f"--{name.replace('_', '-')}", type=argtypes.positive_int, metavar="N")
    for m in (models, *msub.choices.values()):
        m.add_argument("--models-dir", type=Path, metavar="DIR",
                       help="where model files live (default $DESKPILOT_MODELS or "
                            "~/.local/share/deskpilot/models)")

    bench = sub.add_parser(
        "bench", help="measure, and print the figures as JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmarks print figures as JSON; `deskpilot bench WHAT --help` lists "
                    "each one's options.",
        epilog="\n".join(f"  {name:<9} {text}" for name, text in _BENCHES.items()))
    bench.add_argument("what", choices=list(_BENCHES), metavar="WHAT",
                       help="one of: " + ", ".join(_BENCHES))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark")
    _add_ask(sub)

    evals = sub.add_parser(
        "eval", help="measure the model on labelled data (grounding accuracy)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="`deskpilot eval WHAT --help` lists each one's options (docs/eval.md).",
        epilog="\n".join(f"  {name:<9} {text}" for name, (_, text) in _EVALS.items()))
    evals.add_argument("what", choices=list(_EVALS), metavar="WHAT",
                       help="one of: " + ", ".join(_EVALS))
    evals.add_argument("options", nargs=argparse.REMAINDER, help="options of that evaluation")
    sub.add_parser("doctor", help="check that this machine can run the agent, and say how "
                                  "to fix what is missing")
    inspect = sub.add_parser(
        "inspect", help="list what a step can target on the screen now (accessibility "
                        "elements and OCR text) with the step line for each",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="What a task step can target on the screen now: the elements GTK and Qt "
                    "apps publish\n(role and name) and the text OCR reads, each with its box "
                    "and the step line that\nclicks it. Copy a line into a task file.",
        epilog="examples:\n"
               "  deskpilot inspect                       everything on $DISPLAY\n"
               "  deskpilot inspect --window galculator   one window (accessible name, "
               "title or class)\n"
               "  deskpilot inspect --out inspect/        also an outlined PNG and an HTML "
               "page\n"
               "  deskpilot inspect shot.png --json       a saved screenshot (OCR only), as "
               "JSON")
    source = inspect.add_mutually_exclusive_group()
    source.add_argument("--screen", action="store_true",
                        help="the live screen of $DISPLAY (the default)")
    source.add_argument("image", nargs="?", type=Path, metavar="IMAGE",
                        help="a PNG screenshot instead (OCR only)")
    inspect.add_argument("--window", metavar="NAME",
                         help="only this window: its accessible name, title or X11 class "
                              "holds NAME (any case)")
    inspect.add_argument("--out", type=Path, metavar="DIR",
                         help="also write DIR/overlay.png and DIR/index.html")
    inspect.add_argument("--json", action="store_true", help="print the targets as JSON")
    demo = sub.add_parser("demo", help="replay a recorded xcalc run on a private Xvfb display")
    demo.add_argument("--runs-dir", type=Path, metavar="DIR", help="where run directories go")
    return p


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``run`` command: a task in words, or task files."""
    run = sub.add_parser("run", help="carry out a task on this display",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Carry out TASK on the current display ($DISPLAY), one "
                                     "observe-think-act step at a time, under the supervision "
                                     "interface on a terminal (docs/supervision.md) or with a "
                                     "line per step; or run YAML task files (docs/tasks.md) "
                                     "as scripted jobs or UI tests, e.g. `deskpilot run "
                                     "examples/*.yaml --headless --junit junit.xml --report "
                                     "report/`.",
                         epilog=_RUN_EPILOG)
    run.add_argument("task", nargs="+", metavar="TASK|FILE",
                     help='what to do, in words ("open the calculator menu"), or one or more '
                          "YAML task files (docs/tasks.md)")
    run.add_argument("--model", default=None, metavar="NAME|PATH",
                     help="catalog name, path to a text GGUF, or 'tiny' for a random-weight "
                          "model made on the fly (default: the catalog's default model); with "
                          "--backend openai, the name the server serves the model under")
    run.add_argument("--backend", choices=BACKENDS, default=_MODEL.backend,
                     help="llamacpp: run the model in this process (default); openai: send "
                          "each model call to an OpenAI-compatible server (llama-server, vLLM) "
                          "that many sessions share (docs/scaling.md)")
    run.add_argument("--base-url", default=None, metavar="URL",
                     help="with --backend openai, the server's API root, e.g. "
                          "http://127.0.0.1:8080/v1 (default $DESKPILOT_BASE_URL); an API key "
                          "is read from $DESKPILOT_API_KEY or $OPENAI_API_KEY")
    run.add_argument("--constraint", choices=CONSTRAINTS, default=None,
                     help="with --backend openai, how the server is made to answer in the "
                          "action format: grammar (llama.cpp's GBNF; llama-server and "
                          "llama_cpp.server; default), json_schema (response_format; vLLM and "
                          "others), or none (the answer is still validated)")
    run.add_argument("--mmproj", type=Path, metavar="PATH",
                     help="vision projector GGUF (default: found next to --model PATH)")
    run.add_argument("--replay", type=Path, metavar="JSONL",
                     help="replay recorded answers instead of running a model")
    run.add_argument("--max-steps", type=argtypes.positive_int, default=_BUDGET.max_steps,
                     metavar="N", help=f"stop after N steps (default {_BUDGET.max_steps})")
    run.add_argument("--max-seconds", type=argtypes.positive_float,
                     default=_BUDGET.max_seconds, metavar="S",
                     help=f"stop after S seconds of wall time (default {_BUDGET.max_seconds:g})")
    run.add_argument("--monitor", type=int, default=1, metavar="N",
                     help="monitor to watch and act on, as numbered by mss (default 1)")
    run.add_argument("--mode", choices=[m.value for m in Mode], default=_SETTINGS.mode.value,
                     help="direct answers, reasoning first, or the model's choice "
                          "(default direct)")
    run.add_argument("--max-patches", type=argtypes.patch_budget, default=_SETTINGS.max_patches,
                     metavar="N",
                     help=f"image budget in 16x16 patches, {DEFAULT_MIN_PATCHES}-"
                          f"{DEFAULT_MAX_PATCHES} (the model's own limits; default "
                          f"{DEFAULT_MAX_PATCHES})")
    safety = run.add_argument_group(
        "safety", "sensitive actions (keys that lock or kill, typing into a terminal, clicks on "
                  "delete/send/pay/..., secret-looking text) are asked about on this terminal; "
                  "headless runs deny them unless allowed")
    safety.add_argument("--allow", action="append", default=[], metavar="CATEGORY",
                        choices=ALLOW_NAMES,
                        help="let this class of sensitive action run without asking "
                             "(repeatable; task files use their own allow list)")
    safety.add_argument("--region", type=argtypes.region, metavar="X1,Y1,X2,Y2",
                        help="refuse any pointer action outside this screen rectangle")
    safety.add_argument("--window", action="append", default=[], metavar="PATTERN",
                        help="refuse actions on windows whose title and class do not match "
                             "(text, or /regex/; repeatable)")
    run.add_argument("--grounding", choices=[g.value for g in GroundingPrompt],
                     default=_SETTINGS.grounding.value,
                     help="native (default): the step call plans in --mode and names pointer "
                          "targets in words, then the model's own grounding call (image first, "
                          "direct, greedy) returns each box; joint: one call answers the action "
                          "with its box (the earlier path, kept for comparison)")
    run.add_argument("--grounder-model", default=None, metavar="NAME|PATH",
                     help="ground with a second model: a catalog name or text GGUF path (its "
                          "mmproj beside it), or with --grounder-base-url the name a server "
                          "serves it under (default: the planning model, same process)")
    run.add_argument("--grounder-base-url", default=None, metavar="URL",
                     help="ground on an OpenAI-compatible server (e.g. a dedicated GUI-grounding "
                          "model), http://HOST:PORT/v1")
    run.add_argument("--zoom", action="store_true",
                     help="when a target is small on a downscaled view, ask again on a "
                          "native-resolution crop around it (a second, smaller model call)")
    run.add_argument("--no-tui", action="store_true",
                     help="print one line per step instead of opening the interface (the "
                          "interface opens for a task in words on an interactive terminal)")
    run.add_argument("--kill-key", default=DEFAULT_KILL_HOTKEY, metavar="KEYS",
                     help="global hotkey that stops the agent from anywhere, releasing every "
                          f"key and button, in pynput syntax (default {DEFAULT_KILL_HOTKEY}; 'off' "
                          "turns it off)")
    run.add_argument("--dry-run", action="store_true",
                     help="decide and validate actions, but never move the mouse or type")
    run.add_argument("--runs-dir", type=Path, metavar="DIR", help="where run directories go")
    run.add_argument("--n-ctx", type=argtypes.positive_int, default=_MODEL.n_ctx, metavar="N",
                     help=f"llama.cpp context size (default {_MODEL.n_ctx})")
    run.add_argument("--model-timeout", type=argtypes.positive_float,
                     default=DEFAULT_MODEL_TIMEOUT_S, metavar="S",
                     help="abandon a model call that has not answered after S seconds and end "
                          f"the run (default {DEFAULT_MODEL_TIMEOUT_S:g})")
    run.add_argument("--gpu-layers", type=int, default=_MODEL.gpu_layers, metavar="N",
                     help="layers to offload to the GPU (-1 all, 0 CPU only)")
    files = run.add_argument_group(
        "task files", "run FILE.yaml... as UI tests: exit 0 when every task passed, 1 when a "
                      "step failed, 2 on bad input (checked before anything runs)")
    files.add_argument("--headless", action="store_true",
                       help="no interactive interface; start a private Xvfb when there is no "
                            "display")
    files.add_argument("--xvfb", action="store_true",
                       help="always run on a private Xvfb display, even when one is set")
    files.add_argument("--screen-size", type=argtypes.size, default=DEFAULT_SCREEN_SIZE,
                       metavar="WxH",
                       help="size of the private display (default "
                            f"{DEFAULT_SCREEN_SIZE[0]}x{DEFAULT_SCREEN_SIZE[1]})")
    files.add_argument("--junit", type=Path, metavar="FILE",
                       help="write a JUnit XML file: one test case per task")
    files.add_argument("--report", type=Path, metavar="DIR",
                       help="write a self-contained HTML report (DIR/index.html)")
    files.add_argument("--summary", type=Path, metavar="FILE", help="write a JSON summary")
    files.add_argument("--cache", choices=[m.value for m in CacheMode],
                       default=CacheMode.READ_WRITE.value,
                       help="grounding cache: reuse verified targets and store new ones "
                            "(read-write, default), reuse only and fail on a stale entry "
                            "(read-only, for CI), or ground every time (off)")
    files.add_argument("--cache-dir", type=Path, metavar="DIR",
                       help="where cached targets live (default: deskpilot-cache/ next to "
                            "each task file)")
    files.add_argument("--update-baselines", action="store_true",
                       help="store this run's screenshots as the new visual baselines")
    files.add_argument("--concurrency", type=argtypes.positive_int, default=1, metavar="N",
                       help="run up to N task files at once, each in its own process on its "
                            "own private Xvfb display (implies --headless --xvfb), with one "
                            "JUnit/summary/report for all; each task's output goes to a log "
                            "file. Model steps need a shared server (--backend openai "
                            "--base-url URL, docs/scaling.md), or --replay. Default 1")
    files.add_argument("--shard", type=argtypes.shard, default=None, metavar="K/N",
                       help="run only the K-th of N shards of the task files: files sorted by "
                            "path and cut into N even groups, so N CI machines given 1/N .. "
                            "N/N run each file exactly once (docs/python.md, \"CI\")")
    # Internal: how a --concurrency run starts each of its tasks in a child process.
    files.add_argument("--lane", type=int, default=None, help=argparse.SUPPRESS)
    files.add_argument("--result-json", type=Path, default=None, help=argparse.SUPPRESS)
    run.add_argument("--temperature", type=float, default=None, metavar="T",
                     help=f"sampling temperature (default 0, greedy; {TINY_TEMPERATURE:g} with "
                          "--model tiny, "
                          "whose greedy answer would be the same every step)")


_BENCHES = {
    "overhead": "agent overhead per step (capture .. record) at 1080p and 4K on Xvfb, beside "
                "the naive pyautogui loop",
    "model": "image encode, prefill and decode speed of a random-weight GGUF pair of a chosen "
             "shape, direct vs reasoning steps, and the decode ceiling",
    "settle": "waiting for a stable screen after actions on xcalc/xedit, against fixed sleeps",
    "ocr": "OCR grounding at 1080p on xcalc and xedit; galculator steps: full vs incremental "
           "reads, tree walks, grounded clicks and cache hits",
    "serve": "model-driven task files at --concurrency 1, 2, 4 against one shared model "
             "server: wall time, model steps per second, speed-up",
}


def _add_ask(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``ask`` command: one question about an image or the screen."""
    ask = sub.add_parser(
        "ask", help="ask the model about a chart, a document or the screen",
        description="Ask one question about an image file, the screen, or nothing: the image "
                    "goes first, the reasoning trace streams dimmed and the answer is printed "
                    "on its own (--json: one object for scripts).")
    ask.add_argument("question", metavar="QUESTION")
    where = ask.add_mutually_exclusive_group()
    where.add_argument("--image", type=Path, metavar="FILE", help="a PNG or JPEG to ask about")
    where.add_argument("--screen", action="store_true", help="ask about the screen ($DISPLAY)")
    ask.add_argument("--monitor", type=int, default=1, metavar="N")
    ask.add_argument("--mode", choices=[Mode.REASONING.value, Mode.DIRECT.value],
                     default=Mode.REASONING.value,
                     help="reasoning (default: the model's mode for charts, math and "
                          "documents) or direct")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument("--model", default=None, metavar="NAME|PATH")
    ask.add_argument("--mmproj", type=Path, metavar="PATH")
    ask.add_argument("--backend", choices=BACKENDS, default=_MODEL.backend)
    ask.add_argument("--base-url", default=None, metavar="URL")
    ask.add_argument("--replay", type=Path, metavar="JSONL", help="answer from a recording")
    ask.add_argument("--n-ctx", type=argtypes.positive_int, default=_MODEL.n_ctx, metavar="N")
    ask.add_argument("--gpu-layers", type=int, default=_MODEL.gpu_layers, metavar="N")
    ask.add_argument("--max-patches", type=argtypes.patch_budget, default=DEFAULT_MAX_PATCHES,
                     metavar="N")
    ask.add_argument("--max-tokens", type=argtypes.positive_int, default=512, metavar="N",
                     help="answer length limit (default 512)")
    ask.add_argument("--max-reasoning-tokens", type=argtypes.positive_int, default=1024,
                     metavar="N", help="reasoning trace limit (default 1024)")
    ask.add_argument("--temperature", type=float, default=None, metavar="T")


_EVALS = {  # name: (module in deskpilot.agent.eval, what it does)
    "grounding": ("grounding", "point-in-box accuracy on ScreenSpot-v2 / ScreenSpot-Pro records "
                               "(DIR [--out OUT] [--prompt native|joint] [--zoom] [--limit N])"),
    "make-set": ("makeset", "render real X apps on a private Xvfb and label targets from X11 "
                            "geometry and checked OCR, in ScreenSpot-v2 format (DIR)"),
}


def parse_run(argv: Sequence[str]) -> RunOptions:
    """The options of a ``run`` command line (``["run", ...]``, global flags allowed before it)."""
    return run_options(build_parser().parse_args(argv), argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deskpilot`` console script."""
    # --concurrency starts each task with these same arguments (agent/cli/lanes.py).
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # huggingface_hub prints its own warnings (download retries); do not print them twice.
    logging.getLogger("huggingface_hub").propagate = False
    try:
        if args.command == "run":
            from deskpilot.agent.cli.signals import stopping_signal, terminate_as_interrupt

            # SIGTERM/SIGHUP unwind like Ctrl+C, so every held key and button is released.
            with terminate_as_interrupt():
                code = _run(run_options(args, argv))
            # A mode that caught the interrupt and ended cleanly still reports the signal.
            signum = stopping_signal()
            return code if signum is None else exit_for_interrupt(signum)
        if args.command == "models":
            from deskpilot.agent.cli.models import run_models_command
            return run_models_command(models_options(args))
        if args.command == "bench":
            import importlib

            importlib.import_module(f"deskpilot.agent.bench.{args.what}").main(args.options)
            return EXIT_OK
        if args.command == "ask":
            from deskpilot.agent.cli.ask import run_ask
            return run_ask(ask_options(args))
        if args.command == "eval":
            import importlib

            module = importlib.import_module(f"deskpilot.agent.eval.{_EVALS[args.what][0]}")
            return int(module.main(args.options))
        if args.command == "doctor":
            from deskpilot.agent.cli.doctor import run_doctor
            return run_doctor()
        if args.command == "inspect":
            from deskpilot.agent.cli.inspect import inspect_command
            return inspect_command(image=args.image, window=args.window, out=args.out,
                                   as_json=args.json)
        if args.command == "demo":
            from deskpilot.agent.cli.demo import run_demo
            return run_demo(args.runs_dir)
    except KeyboardInterrupt as exc:
        from deskpilot.agent.cli.signals import stopping_signal

        signum = stopping_signal() or getattr(exc, "signum", None)
        say(f"terminated by signal {signum}" if signum else "interrupted", file=sys.stderr)
        return exit_for_interrupt(signum)
    except UserError as exc:
        say(f"deskpilot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


def _run(options: RunOptions) -> int:
    """A task in words, or task files: which one is decided by the arguments' suffixes."""
    from deskpilot.agent.cli.tasks import is_task_file, run_task_files

    if any(is_task_file(a) for a in options.tasks):
        return run_task_files(options)
    if len(options.tasks) > 1:
        raise UserError(f"got {len(options.tasks)} arguments; put a task in words in quotes: "
                        f'deskpilot run "{" ".join(options.tasks)}"')
    files = options.files
    if files.headless or files.xvfb or files.concurrency > 1 or files.shard is not None:
        raise UserError("--headless, --xvfb, --concurrency and --shard run task files "
                        "(FILE.yaml); a "
                        "task in words runs on the current display")
    from deskpilot.agent.cli.words import run_words_command

    return run_words_command(options)


