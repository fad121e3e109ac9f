"""``deskpilot models ...``: list, pull, verify, make-tiny."""

from __future__ import annotations

from pathlib import Path

from deskpilot.agent.cli.console import say
from deskpilot.agent.cli.errors import EXIT_FAILED, EXIT_OK, UserError
from deskpilot.agent.cli.options import ModelsOptions
from deskpilot.models import catalog
from deskpilot.models.tiny import TinyShape, write_tiny_pair


def run_models_command(options: ModelsOptions) -> int:
    """Dispatch one ``models`` sub-command."""
    models_dir: Path = options.models_dir or catalog.default_models_dir()
    match options.action:
        case "list":
            return _list(models_dir)
        case "pull":
            return _pull(options.name, models_dir)
        case "verify":
            return _verify(models_dir, record=options.record)
        case "make-tiny":
            return _make_tiny(options)
    raise UserError(f"unknown models command {options.action!r}")


def _list(models_dir: Path) -> int:
    say(f"models directory: {models_dir}\n")
    for row in catalog.list_entries(models_dir):
        say(f"{row.name:<20} {row.status:<8} {row.size:>10}  {row.description}")
        for name in row.files:
            say(f"{'':<20} {name}")
    say("\nalso: --model tiny (a random-weight model made on the fly, for trying the loop),"
          "\n      --model PATH/TO/text.gguf --mmproj PATH/TO/mmproj.gguf")
    return EXIT_OK


def _pull(name: str, models_dir: Path) -> int:
    try:
        paths = catalog.pull(name, models_dir, progress=True)
    except catalog.ModelError as exc:
        raise UserError(str(exc)) from None
    for chosen in paths.chosen:
        say(f"chose {chosen}")
    say(f"ready:\n  model  {paths.model}\n  mmproj {paths.mmproj}")
    return EXIT_OK


def _verify(models_dir: Path, *, record: bool) -> int:
    results = catalog.verify(models_dir, record=record)
    bad = False
    for r in results:
        say(f"{r.status.value:<18} {r.entry:<18} {r.path}\n{'':<18} {r.detail}")
        # A missing file fails too: "verify" answers whether the model is ready to use.
        bad |= r.status in (catalog.VerifyStatus.MISSING, catalog.VerifyStatus.SIZE_MISMATCH,
                            catalog.VerifyStatus.CHECKSUM_MISMATCH)
    return EXIT_FAILED if bad else EXIT_OK


def _make_tiny(options: ModelsOptions) -> int:
    base = TinyShape.phi4rv_15b() if options.real_shape else TinyShape.tiny()
    try:
        shape = TinyShape.from_overrides(base, **dict(options.dims))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if options.directory is None:
        raise UserError("models make-tiny needs the DIRECTORY to write the pair into")
    pair = write_tiny_pair(options.directory, shape, seed=options.seed)
    for path in (pair.model, pair.mmproj):
        say(f"{path}  ({path.stat().st_size / 1e6:.2f} MB)")
    say("random weights: the pair runs the real llama.cpp path, but its answers are noise")
    return EXIT_OK
