"""The ``run`` command's arguments, turned once into frozen, typed options.

This is the only module that reads an ``argparse.Namespace``; everything below the command line
takes these objects (or the smaller ones inside them) instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deskpilot.agent.cli.errors import UserError
from deskpilot.agent.reports.outputs import Outputs
from deskpilot.agent.settings import Budget, ModelSettings
from deskpilot.agent.takeover import DEFAULT_KILL_HOTKEY
from deskpilot.agent.tasks.cache import CacheMode
from deskpilot.models.choice import ModelChoice
from deskpilot.models.grounder import GroundingPrompt
from deskpilot.models.runtime import Mode

if TYPE_CHECKING:
    from deskpilot.models.runtime import Runtime

DEFAULT_SCREEN_SIZE = (1280, 800)  # a private display's size unless --screen-size says otherwise
DEFAULT_MODEL_TIMEOUT_S = 300.0
TINY_TEMPERATURE = 0.8  # the tiny model's greedy answer would be the same at every step
# The dimensions of `models make-tiny` that have a flag of their own (--text-embd ...).
TINY_SHAPE_FLAGS = ("text_embd", "text_layers", "text_heads", "text_kv_heads", "text_ff",
                    "vision_embd", "vision_layers", "vision_heads", "vision_ff", "max_patches")


@dataclass(frozen=True, slots=True)
class Safety:
    """What a task in words may do unasked, and where it may act at all."""

    allow: frozenset[str] = frozenset()  # approval categories that need no approval
    region: tuple[int, int, int, int] | None = None
    windows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskFileRun:
    """How task files run: on which display, with which cache, how many at once."""

    headless: bool = False
    xvfb: bool = False  # a private Xvfb even when a display is set
    screen_size: tuple[int, int] = DEFAULT_SCREEN_SIZE
    cache: CacheMode = CacheMode.READ_WRITE
    cache_dir: Path | None = None
    update_baselines: bool = False
    concurrency: int = 1
    shard: tuple[int, int] | None = None  # (K, N): only the K-th of N shards of the files
    lane: int | None = None  # set in the child that runs one file of a --concurrency run


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything ``deskpilot run`` was asked for."""

    tasks: tuple[str, ...]  # one task in words, or task files
    model: ModelChoice = field(default_factory=ModelChoice)
    settings: ModelSettings = field(default_factory=ModelSettings)
    budget: Budget = field(default_factory=Budget)
    safety: Safety = field(default_factory=Safety)
    files: TaskFileRun = field(default_factory=TaskFileRun)
    outputs: Outputs = field(default_factory=Outputs)
    monitor: int = 1
    runs_dir: Path | None = None
    dry_run: bool = False
    no_tui: bool = False
    kill_key: str = DEFAULT_KILL_HOTKEY  # pynput syntax, or "off"
    argv: tuple[str, ...] = ()  # the command line as given, for the children of --concurrency
    grounder: ModelChoice | None = None  # a second model that grounds (None: the same one)

    @property
    def task(self) -> str:
        """The task in words (a run in words has exactly one)."""
        return self.tasks[0]


def run_options(args: argparse.Namespace, argv: Sequence[str]) -> RunOptions:
    """The options of a parsed ``run`` command line; UserError when the model choice is wrong."""
    try:
        model = ModelChoice(model=args.model, mmproj=args.mmproj, replay=args.replay,
                            backend=args.backend, base_url=args.base_url,
                            constraint=args.constraint, n_ctx=args.n_ctx,
                            gpu_layers=args.gpu_layers, timeout_s=args.model_timeout).checked()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    grounder = grounder_choice(args, model)
    temperature = args.temperature
    if temperature is None:
        temperature = TINY_TEMPERATURE if model.is_tiny else 0.0
    return RunOptions(
        tasks=tuple(args.task), model=model,
        settings=ModelSettings(mode=Mode(args.mode), max_patches=args.max_patches,
                               temperature=float(temperature), zoom=args.zoom,
                               grounding=GroundingPrompt(args.grounding)),
        budget=Budget(max_steps=args.max_steps, max_seconds=args.max_seconds),
        safety=Safety(allow=frozenset(args.allow), region=args.region,
                      windows=tuple(args.window)),
        files=TaskFileRun(headless=args.headless, xvfb=args.xvfb, screen_size=args.screen_size,
                          cache=CacheMode(args.cache), cache_dir=args.cache_dir,
                          update_baselines=args.update_baselines,
                          concurrency=args.concurrency, shard=args.shard, lane=args.lane),
        outputs=Outputs(junit=args.junit, summary=args.summary, report=args.report,
                        lane_result=args.result_json),
        monitor=args.monitor, runs_dir=args.runs_dir, dry_run=args.dry_run,
        no_tui=args.no_tui, kill_key=args.kill_key, argv=tuple(argv), grounder=grounder)


def grounder_choice(args: argparse.Namespace, model: ModelChoice) -> ModelChoice | None:
    """The second model that grounds targets (--grounder-model, --grounder-base-url), reached
    with the main model's limits; None when the planner grounds its own targets."""
    name, url = args.grounder_model, args.grounder_base_url
    if name is None and url is None:
        return None
    if args.grounding != GroundingPrompt.NATIVE:
        raise UserError("--grounder-model and --grounder-base-url need --grounding native: the "
                        "joint call answers its own boxes")
    try:
        return ModelChoice(model=name, backend="openai" if url else "llamacpp", base_url=url,
                           n_ctx=model.n_ctx, gpu_layers=model.gpu_layers,
                           timeout_s=model.timeout_s).checked()
    except ValueError as exc:
        message = str(exc).replace("--model", "--grounder-model")
        raise UserError(f"grounder: {message}") from None


def model_opener(options: RunOptions) -> Callable[[], Runtime]:
    """Check now that the model these options name can be had (UserError if not), and open it
    on first use: task files without model steps never load it."""
    from deskpilot.models.catalog import ModelError
    from deskpilot.models.open import check_model, open_runtime

    try:
        check_model(options.model)
    except (ModelError, ValueError) as exc:
        raise UserError(f"these tasks have model steps: {exc}") from None
    return lambda: open_runtime(options.model)


def as_lane(options: RunOptions) -> RunOptions:
    """A ``--concurrency`` child's options: its one task file, on a private display, with the
    suite's files left to the parent (which writes them for every task)."""
    lane = options.files.lane
    if lane is None or not 0 <= lane < len(options.tasks):
        raise UserError(f"--lane {lane}: there are {len(options.tasks)} task files")
    return replace(options, tasks=(options.tasks[lane],),
                   outputs=Outputs(lane_result=options.outputs.lane_result),
                   files=replace(options.files, headless=True, xvfb=True, concurrency=1))


@dataclass(frozen=True, slots=True)
class ModelsOptions:
    """What a ``deskpilot models ...`` command was asked for."""

    action: str  # list, pull, verify or make-tiny
    models_dir: Path | None = None
    name: str = ""  # pull: the catalog entry
    record: bool = False  # verify: pin files copied in by hand
    directory: Path | None = None  # make-tiny: where the pair goes
    real_shape: bool = False
    seed: int = 0
    dims: tuple[tuple[str, int], ...] = ()  # make-tiny: the dimensions given on the command line


def models_options(args: argparse.Namespace) -> ModelsOptions:
    """The options of a parsed ``models`` command line."""
    return ModelsOptions(
        action=args.models_command, models_dir=args.models_dir,
        name=getattr(args, "name", ""), record=getattr(args, "record", False),
        directory=getattr(args, "directory", None),
        real_shape=getattr(args, "real_shape", False), seed=getattr(args, "seed", 0),
        dims=tuple((name, value) for name in TINY_SHAPE_FLAGS
                   if (value := getattr(args, name, None)) is not None))


@dataclass(frozen=True, slots=True)
class AskOptions:
    """What ``deskpilot ask`` was asked."""

    question: str
    model: ModelChoice
    image: Path | None = None
    screen: bool = False
    monitor: int = 1
    mode: Mode = Mode.REASONING
    json: bool = False
    max_patches: int = 3600
    max_tokens: int = 512
    max_reasoning_tokens: int = 1024
    temperature: float = 0.0


def ask_options(args: argparse.Namespace) -> AskOptions:
    """The options of a parsed ``ask`` command line; UserError when they do not fit."""
    if args.image is not None and args.screen:
        raise UserError("give --image FILE or --screen, not both")
    try:
        model = ModelChoice(model=args.model, mmproj=args.mmproj, replay=args.replay,
                            backend=args.backend, base_url=args.base_url, n_ctx=args.n_ctx,
                            gpu_layers=args.gpu_layers).checked()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    temperature = args.temperature
    if temperature is None:
        temperature = TINY_TEMPERATURE if model.is_tiny else 0.0
    return AskOptions(question=args.question, model=model, image=args.image,
                      screen=args.screen, monitor=args.monitor, mode=Mode(args.mode),
                      json=args.json, max_patches=args.max_patches, max_tokens=args.max_tokens,
                      max_reasoning_tokens=args.max_reasoning_tokens,
                      temperature=float(temperature))
