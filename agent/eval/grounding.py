"""``deskpilot eval grounding DIR``: grounding accuracy on ScreenSpot-format records.

Each record's screenshot goes through the same preparation and the same grounding call the
agent uses (:class:`models.grounder.Grounder`, native or joint prompt, optionally zoomed); the
answer's centre, mapped back to the screenshot's pixels, scores a hit when it lies inside the
labelled box (ScreenSpot's metric). Every record's prompt, raw answer, box and verdict go to
``OUT/predictions.jsonl`` as it is made, so an interrupted run resumes where it stopped;
``OUT/summary.json`` holds the accuracy overall and per group, ``OUT/misses.html`` each miss
drawn on its screenshot.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from deskpilot.agent.cli.console import say, say_progress
from deskpilot.agent.eval.screenspot import Dataset, DatasetError, GroundingRecord, read_dataset
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.preprocess import DEFAULT_MAX_PATCHES, prepare
from deskpilot.grounding.zoom import plan_zoom, refine_box
from deskpilot.models.choice import BACKENDS, CONSTRAINTS, ModelChoice
from deskpilot.models.grounder import Grounder, GroundingPrompt, Located
from deskpilot.models.runtime import Runtime, RuntimeFailure

log = logging.getLogger(__name__)

PREDICTIONS, SUMMARY, MISSES = "predictions.jsonl", "summary.json", "misses.html"
MISS_IMAGE_WIDTH = 1280  # the miss pictures are shrunk to this width at most
PUBLISHED = {"screenspot-v2": {"overall": 88.2, "desktop": 87.1, "mobile": 88.6, "web": 88.8}}


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """How each record is asked."""

    prompt: GroundingPrompt = GroundingPrompt.NATIVE
    max_patches: int = DEFAULT_MAX_PATCHES
    zoom: bool = False
    zoom_patches: int = 1024
    limit: int | None = None


def evaluate(dataset: Dataset, runtime: Runtime, out: Path, options: EvalOptions, *,
             progress: Callable[[int, int, int], None] | None = None) -> dict[str, Any]:
    """Ground every record not yet in ``out``'s predictions; write the summary and misses."""
    out.mkdir(parents=True, exist_ok=True)
    done = _load_done(out / PREDICTIONS)
    records = list(dataset.records[:options.limit] if options.limit else dataset.records)
    grounder = Grounder(runtime, options.prompt)
    errors = list(dataset.errors)
    hits = sum(1 for p in done.values() if p["hit"])
    with (out / PREDICTIONS).open("a", encoding="utf-8") as fh:
        for n, record in enumerate(records, 1):
            if record.key not in done:
                try:
                    line = _predict(record, grounder, options)
                except (OSError, ValueError) as exc:  # the record's image, not the model
                    errors.append(f"{record.where}: {exc}")
                    line = None
                if line is not None:
                    fh.write(json.dumps(line) + "\n")
                    fh.flush()
                    done[record.key] = line
                    hits += line["hit"]
            if progress is not None:
                progress(n, len(records), hits)
    wanted = {r.key for r in records}
    predictions = [p for key, p in done.items() if key in wanted]
    summary = _summary(dataset, predictions, options, runtime.name, errors)
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_misses(out, [p for p in predictions if not p["hit"]])
    return summary


def _load_done(path: Path) -> dict[str, dict[str, Any]]:
    """Predictions of an earlier run (a torn last line, from an interruption, is dropped)."""
    if not path.is_file():
        return {}
    done: dict[str, dict[str, Any]] = {}
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
            done[str(data["key"])] = data
            kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("dropping a torn line of %s", path)
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return done


def _predict(record: GroundingRecord, grounder: Grounder,
             options: EvalOptions) -> dict[str, Any]:
    if not record.image.is_file():
        raise ValueError(f"image not found: {record.image}")
    with Image.open(record.image) as img:
        rgb = np.asarray(img.convert("RGB"))
    height, width = rgb.shape[:2]
    if record.size is not None and record.size != (width, height):
        raise ValueError(f"img_size {list(record.size)} but {record.image.name} is "
                         f"{width}x{height}")
    x1, y1, x2, y2 = record.box
    if x2 > width or y2 > height:
        raise ValueError(f"bbox {list(record.box)} lies outside the {width}x{height} image")
    frame = Frame(np.ascontiguousarray(rgb), ScreenGeometry(0, 0, width, height), 0.0)
    image = prepare(frame, max_patches=options.max_patches)
    found = grounder.locate(record.instruction, image)
    box, zoomed = found.box, None
    if box is not None and options.zoom:
        region = plan_zoom(image.view, box, zoom_patches=options.zoom_patches)
        if region is not None:
            crop = prepare(frame, max_patches=options.zoom_patches, region=region)
            second = grounder.locate(record.instruction, crop)
            zoomed = _call(second)
            if second.box is not None:
                box = refine_box(image.view, crop.view, second.box)
    point = None
    if box is not None:
        r = image.view.region
        point = (r.x + (box[0] + box[2]) / 2 * r.width, r.y + (box[1] + box[3]) / 2 * r.height)
    hit = point is not None and x1 <= point[0] <= x2 and y1 <= point[1] <= y2
    return {"key": record.key, "where": record.where, "instruction": record.instruction,
            "image": str(record.image), "size": [width, height], "groups": record.groups,
            "truth": list(record.box), **_call(found),
            "final_box": None if box is None else list(box),
            "point": None if point is None else [round(point[0], 1), round(point[1], 1)],
            "zoom": zoomed, "hit": hit}


def _call(found: Located) -> dict[str, Any]:
    return {"prompt": found.prompt, "answer": found.reply.answer,
            "box": None if found.box is None else list(found.box), "note": found.note,
            "prompt_tokens": found.reply.prompt_tokens}


def _rate(hits: int, n: int) -> dict[str, Any]:
    return {"n": n, "hits": hits, "accuracy": round(100 * hits / n, 2) if n else None}


def _summary(dataset: Dataset, predictions: list[dict[str, Any]], options: EvalOptions,
             model: str, errors: list[str]) -> dict[str, Any]:
    groups: dict[str, dict[str, list[bool]]] = {}
    for p in predictions:
        for name, value in p["groups"].items():
            groups.setdefault(name, {}).setdefault(value, []).append(p["hit"])
    return {
        "layout": dataset.layout, "model": model, "prompt": options.prompt.value,
        "zoom": options.zoom, "max_patches": options.max_patches,
        "overall": _rate(sum(p["hit"] for p in predictions), len(predictions)),
        "groups": {name: {value: _rate(sum(v), len(v)) for value, v in sorted(values.items())}
                   for name, values in sorted(groups.items())},
        "published": PUBLISHED.get(dataset.layout),
        "bad_records": errors,
    }


def _write_misses(out: Path, misses: list[dict[str, Any]]) -> None:
    folder = out / "misses"
    folder.mkdir(exist_ok=True)
    items = []
    for i, p in enumerate(misses):
        name = f"miss-{i:04d}.jpg"
        try:
            _draw_miss(p, folder / name)
        except OSError as exc:
            log.warning("could not draw %s: %s", p["key"], exc)
            continue
        items.append(
            f"<figure><img src=\"misses/{name}\" alt=\"{html.escape(p['key'])}\">"
            f"<figcaption><b>{html.escape(p['instruction'])}</b> ({html.escape(p['key'])})<br>"
            f"answer: <code>{html.escape(p['answer'])}</code> {html.escape(p['note'])}<br>"
            "green: the labelled box; red: the predicted box and its centre</figcaption>"
            "</figure>")
    page = ("<!doctype html><meta charset=\"utf-8\"><title>grounding misses</title>"
            "<style>figure{margin:1em 0}img{max-width:100%;border:1px solid #ccc}</style>"
            f"<h1>{len(misses)} misses</h1>" + "".join(items))
    (out / MISSES).write_text(page, encoding="utf-8")


def _draw_miss(p: dict[str, Any], path: Path) -> None:
    with Image.open(p["image"]) as img:
        picture = img.convert("RGB")
    scale = min(1.0, MISS_IMAGE_WIDTH / picture.width)
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    draw.rectangle(p["truth"], outline=(0, 200, 0), width=3)
    if p["final_box"] is not None:
        b = p["final_box"]
        draw.rectangle([b[0] * width, b[1] * height, b[2] * width, b[3] * height],
                       outline=(230, 0, 0), width=3)
    if p["point"] is not None:
        x, y = p["point"]
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(230, 0, 0), width=3)
    if scale < 1.0:
        picture = picture.resize((round(width * scale), round(height * scale)))
    picture.save(path, quality=85)


# ------------------------------------------------------------------ the command


def _progress(n: int, total: int, hits: int) -> None:
    width = 30
    filled = width * n // max(total, 1)
    say_progress(f"[{'#' * filled}{'.' * (width - filled)}] {n}/{total}  hits {hits}",
                 last=n >= total)


def print_summary(summary: dict[str, Any]) -> None:
    """The accuracy overall and per group, as lines for a person."""
    o = summary["overall"]
    acc = "n/a" if o["accuracy"] is None else f"{o['accuracy']:.1f}%"
    say(f"{summary['layout']}  prompt {summary['prompt']}  zoom {summary['zoom']}  "
        f"model {summary['model']}")
    say(f"overall  {acc}  ({o['hits']}/{o['n']})")
    for name, values in summary["groups"].items():
        for value, r in values.items():
            say(f"  {name:<10} {value:<24} {r['accuracy']:6.1f}%  ({r['hits']}/{r['n']})")
    if summary["published"]:
        say("published (model card): " + ", ".join(f"{k} {v}" for k, v in
                                                   summary["published"].items()))
    for error in summary["bad_records"]:
        say(f"bad record: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """``deskpilot eval grounding DIR [--out OUT] ...``; the exit status."""
    p = argparse.ArgumentParser(prog="deskpilot eval grounding",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("directory", type=Path, metavar="DIR",
                   help="a ScreenSpot-v2 or ScreenSpot-Pro directory in its original layout")
    p.add_argument("--out", type=Path, default=Path("grounding-eval"), metavar="OUT",
                   help="where predictions.jsonl, summary.json and misses.html go; a run "
                        "resumes from the predictions already there (default ./grounding-eval)")
    p.add_argument("--prompt", choices=[g.value for g in GroundingPrompt], default="native",
                   help="native: the model's own grounding sentence (default); joint: the JSON "
                        "click request")
    p.add_argument("--zoom", action="store_true",
                   help="ask again on a native-resolution crop when the target is small")
    p.add_argument("--max-patches", type=int, default=DEFAULT_MAX_PATCHES, metavar="N")
    p.add_argument("--zoom-patches", type=int, default=1024, metavar="N")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N records")
    p.add_argument("--model", default=None, metavar="NAME|PATH")
    p.add_argument("--mmproj", type=Path, default=None, metavar="PATH")
    p.add_argument("--backend", choices=BACKENDS, default="llamacpp")
    p.add_argument("--base-url", default=None, metavar="URL")
    p.add_argument("--constraint", choices=CONSTRAINTS, default=None)
    p.add_argument("--replay", type=Path, default=None, metavar="JSONL",
                   help="answer from recorded replies, one per record in order")
    p.add_argument("--n-ctx", type=int, default=8192, metavar="N")
    p.add_argument("--gpu-layers", type=int, default=-1, metavar="N")
    args = p.parse_args(argv)
    try:
        dataset = read_dataset(args.directory)
    except DatasetError as exc:
        say(f"deskpilot: {exc}", file=sys.stderr)
        return 2
    say(f"{len(dataset.records)} records ({dataset.layout}), {len(dataset.errors)} bad",
        file=sys.stderr)
    from deskpilot.models.catalog import ModelError
    from deskpilot.models.open import open_runtime

    choice = ModelChoice(model=args.model, mmproj=args.mmproj, replay=args.replay,
                         backend=args.backend, base_url=args.base_url,
                         constraint=args.constraint, n_ctx=args.n_ctx,
                         gpu_layers=args.gpu_layers)
    try:
        runtime = open_runtime(choice)
    except (ModelError, RuntimeFailure, ValueError) as exc:
        say(f"deskpilot: {exc}", file=sys.stderr)
        return 2
    options = EvalOptions(GroundingPrompt(args.prompt), args.max_patches, args.zoom,
                          args.zoom_patches, args.limit)
    try:
        summary = evaluate(dataset, runtime, args.out, options, progress=_progress)
    except RuntimeFailure as exc:
        say(f"\ndeskpilot: the model failed: {exc}; run again to resume", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    print_summary(summary)
    say(f"wrote {args.out / PREDICTIONS}, {args.out / SUMMARY}, {args.out / MISSES}")
    return 0


__all__ = ["EvalOptions", "evaluate", "main", "print_summary"]
