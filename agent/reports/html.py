"""The HTML report of a suite run: one self-contained page that opens offline.

Screenshots are embedded as JPEG data URIs with an SVG overlay (the target's box, the click
marker) drawn in the screenshot's own pixel coordinates, so the overlay scales with the image.
Every piece of text is escaped: labels may hold screen text and the model's output is
untrusted. A Content-Security-Policy forbids scripts and remote loads as a second line.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image

from deskpilot.agent.records import Outcome, StepRecord
from deskpilot.agent.reports.summary import write_private
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus

log = logging.getLogger(__name__)

MAX_WIDTH = 1600       # wider screenshots are downscaled for the report
JPEG_QUALITY = 80
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass(frozen=True, slots=True)
class _Picture:
    """An embeddable image and the pixel size of the original (the overlay's coordinates)."""

    uri: str
    width: int
    height: int


def _embed(path: Path | None) -> _Picture | None:
    """Read an image and re-encode it as a JPEG data URI; None when it cannot be read."""
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            size = image.size
            rgb = image.convert("RGB")
    except OSError as exc:  # missing, unreadable or not an image: the report still renders
        log.warning("report: screenshot %s not embedded: %s", path, exc)
        return None
    if rgb.width > MAX_WIDTH:
        rgb = rgb.resize((MAX_WIDTH, max(1, round(rgb.height * MAX_WIDTH / rgb.width))),
                         Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return _Picture("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(),
                    *size)


def _overlay(pic: _Picture, box: Sequence[int] | None, points: Sequence[tuple[int, int]]) -> str:
    """SVG with the box as a rectangle and each point as a ring with a crosshair."""
    if box is None and not points:
        return ""
    # Sizes in image pixels, proportional to the image, so the marker reads the same whether
    # the screenshot is 800 or 4000 pixels wide; strokes keep their width on screen.
    r = max(10, round(max(pic.width, pic.height) / 70))
    shapes: list[str] = []
    if box is not None:
        x1, y1, x2, y2 = box
        rect = (f'x="{min(x1, x2)}" y="{min(y1, y2)}" width="{abs(x2 - x1)}" '
                f'height="{abs(y2 - y1)}" vector-effect="non-scaling-stroke"')
        shapes += [f'<rect class="halo" {rect}/>', f'<rect class="box" {rect}/>']
    if len(points) > 1:
        coords = " ".join(f"{x},{y}" for x, y in points)
        shapes.append(f'<polyline class="path" points="{coords}" '
                      'vector-effect="non-scaling-stroke"/>')
    for n, (x, y) in enumerate(points, 1):
        marker = (f'<circle cx="{x}" cy="{y}" r="{r}" vector-effect="non-scaling-stroke"/>'
                  f'<path d="M{x - 2 * r} {y}H{x - r // 3}M{x + r // 3} {y}H{x + 2 * r}'
                  f'M{x} {y - 2 * r}V{y - r // 3}M{x} {y + r // 3}V{y + 2 * r}" '
                  'vector-effect="non-scaling-stroke"/>')
        shapes += [f'<g class="halo">{marker}</g>', f'<g class="mark">{marker}</g>',
                   f'<circle class="dot" cx="{x}" cy="{y}" r="{max(2, r // 5)}"/>']
        if len(points) > 1:
            shapes.append(f'<text x="{x + r + 4}" y="{y - r - 4}">{n}</text>')
    return (f'<svg viewBox="0 0 {pic.width} {pic.height}" preserveAspectRatio="xMidYMid meet" '
            f'aria-hidden="true">{"".join(shapes)}</svg>')


def _figure(run_dir: Path | None, rel: str | None, caption: str, *, cls: str = "shot",
            box: Sequence[int] | None = None, points: Sequence[tuple[int, int]] = ()) -> str:
    """A screenshot with its overlay, or a note that it is missing."""
    if rel is None:
        return ""
    pic = _embed(run_dir / rel if run_dir is not None else None)
    if pic is None:
        return f'<p class="missing">{_e(caption)} missing: <code>{_e(rel)}</code></p>'
    return (f'<figure class="{cls}"><div class="frame"><img src="{pic.uri}" width="{pic.width}" '
            f'height="{pic.height}" alt="{_e(caption)}">{_overlay(pic, box, points)}</div>'
            f'<figcaption>{_e(caption)}: {_e(rel)} · {pic.width}&times;{pic.height}</figcaption>'
            '</figure>')


def _details(summary: str, body: str, *, opened: bool = False, cls: str = "") -> str:
    if not body:
        return ""
    attrs = (f' class="{cls}"' if cls else "") + (" open" if opened else "")
    return f"<details{attrs}><summary>{_e(summary)}</summary>{body}</details>"


def _pre(text: str) -> str:
    return f"<pre>{_e(text)}</pre>" if text else ""


def _status_badge(status: TaskStatus) -> str:
    return f'<span class="badge {status.value}">{_e(status.value)}</span>'


def _facts(items: Iterable[str]) -> str:
    spans = "".join(f"<span>{_e(item)}</span>" for item in items if item)
    return f'<div class="facts-line">{spans}</div>' if spans else ""


def _agent_step(run_dir: Path | None, sub: StepRecord, *, opened: bool) -> str:
    """One of the agent loop's steps inside a ``do:`` step."""
    what = (f"unusable reply: {sub.error}" if sub.outcome is Outcome.REJECTED
            else f"{sub.summary}: {sub.error}" if sub.outcome is Outcome.DENIED
            else sub.summary)
    where = " → ".join(f"({x}, {y})" for x, y in sub.points)
    model = "".join(f"<h4>{name}</h4>{_pre(text)}" for name, text in
                    (("reasoning", sub.reasoning), ("answer", sub.answer),
                     ("grounding", "\n".join(sub.grounding_lines()))) if text)
    shot = _figure(run_dir, sub.screenshot, f"agent step {sub.index} screenshot",
                   points=sub.points)
    return (f'<li class="agent-step"><div class="step-head"><span class="num">{sub.index}</span>'
            f'<span>{_e(what)}</span>'
            f'<span class="outcome {_e(sub.outcome.value)}">{_e(sub.outcome.value)}</span></div>'
            + _facts([f"at {where}" if where else "", sub.timings.line(),
                      f"{sub.image_tokens} image tokens" if sub.image_tokens else ""])
            + _details("screenshot", shot, opened=opened)
            + _details("model text", model, cls="model") + "</li>")


def _step(task_id: str, run_dir: Path | None, step: ScriptStep, *, failing: bool) -> str:
    """One task-file step: what it did, how it was grounded, and the evidence."""
    state = "passed" if step.passed else "failed"
    source = (f'<span class="badge src src-{_e(step.source.value)}">{_e(step.source.value)}'
              "</span>" if step.source is not None else "")
    phases = [f"{phase} {seconds * 1e3:.0f} ms" for phase, seconds in step.timings.items()]
    where = [f"box {step.box}" if step.box is not None else "",
             f"point {step.point}" if step.point is not None else ""]
    candidates = ("".join(f"<li><code>{_e(c)}</code></li>" for c in step.candidates))
    evidence = (_figure(run_dir, step.screenshot, f"step {step.index} screenshot",
                        box=step.box, points=[step.point] if step.point is not None else [])
                + _figure(run_dir, step.diff, f"step {step.index} difference image",
                          cls="diff"))
    agent = "".join(_agent_step(run_dir, sub, opened=failing and n == len(step.agent_steps))
                    for n, sub in enumerate(step.agent_steps, 1))
    return (f'<li class="step {state}{" failing" if failing else ""}" '
            f'id="{task_id}-step-{step.index}"><div class="step-head">'
            f'<span class="num">{step.index}</span><code class="label">{_e(step.label)}</code>'
            f'<span class="badge {state}">{"pass" if step.passed else "fail"}</span>{source}'
            f'<span class="badge kind">{_e(step.kind)}</span>'
            f'<span class="where">line {step.file_line}</span>'
            f'<span class="time">{_duration(step.seconds)}</span></div>'
            f'<p class="step-message">{_e(step.message)}</p>'
            + _facts(where + phases)
            + (f'<div class="candidates">candidates:<ul>{candidates}</ul></div>'
               if candidates else "")
            + (f'<ol class="agent-steps">{agent}</ol>' if agent else "")
            + _details("screenshot and difference image" if step.diff else "screenshot",
                       evidence, opened=failing)
            + _details("model text", _pre(step.model_text), opened=failing, cls="model")
            + "</li>")


def _task(n: int, task: TaskResult) -> str:
    """A task's section, open when it did not pass."""
    task_id = f"task-{n}"
    failed = task.failed_step
    steps = "".join(_step(task_id, task.run_dir, s, failing=s is failed) for s in task.steps)
    opened = " open" if task.status is not TaskStatus.PASSED else ""
    run_dir = (f'<p class="file">run directory: <code>{_e(task.run_dir)}</code></p>'
               if task.run_dir is not None else "")
    return (f'<section class="task {task.status.value}" id="{task_id}"><details{opened}>'
            f"<summary>{_status_badge(task.status)}<span class=\"name\">{_e(task.name)}</span>"
            f'<span class="file">{_e(task.file)}</span>'
            f'<span class="time">{_duration(task.seconds)}</span></summary>'
            f'<div class="task-body"><p class="task-message">{_e(task.message)}</p>{run_dir}'
            f'<ol class="steps">{steps}</ol></div></details></section>')


def _nav_item(n: int, task: TaskResult) -> str:
    failed = task.failed_step
    link = (f' — <a href="#task-{n}-step-{failed.index}">step {failed.index}: '
            f"{_e(failed.label)}</a>" if failed is not None else "")
    return (f'<li>{_status_badge(task.status)} <a href="#task-{n}">{_e(task.name)}</a> '
            f'<span class="time">{_duration(task.seconds)}</span>{link}</li>')


def _header(suite: SuiteResult) -> str:
    counts = suite.counts()
    verdict = TaskStatus.PASSED if suite.passed else TaskStatus.FAILED
    width, height = suite.screen_size
    facts = (("total time", _duration(suite.seconds)), ("started", suite.started),
             ("display", suite.display or "—"), ("screen", f"{width} x {height}"))
    numbers = "".join(f'<span class="n-{s.value}">{counts[s.value]} {s.value}</span>'
                      for s in TaskStatus if counts[s.value] or s is TaskStatus.PASSED)
    items = "".join(_nav_item(n, t) for n, t in enumerate(suite.tasks, 1))
    return (f'<header class="suite {verdict.value}"><div>'
            f"<h1>deskpilot run {_status_badge(verdict)}</h1>"
            f'<p class="counts">{numbers}<span>{len(suite.tasks)} tasks</span></p>'
            '<dl class="facts">'
            + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
            + f"</dl><nav><ol>{items}</ol></nav></div></header>")


def render_report(suite: SuiteResult) -> str:
    """The report page as one HTML string."""
    css = (resources.files("deskpilot.agent") / "data" / "report.css").read_text(encoding="utf-8")
    verdict = "passed" if suite.passed else "failed"
    counts = suite.counts()
    title = f"deskpilot run — {verdict} ({counts['passed']}/{len(suite.tasks)} passed)"
    tasks = "".join(_task(n, t) for n, t in enumerate(suite.tasks, 1))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{css}</style></head><body>"
            f"{_header(suite)}<main>{tasks}</main></body></html>\n")


def write_report(directory: Path, suite: SuiteResult) -> Path:
    """Write ``directory/index.html`` (directory 0700 when new, file 0600); return its path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "index.html"
    write_private(path, render_report(suite).encode("utf-8"))
    return path
