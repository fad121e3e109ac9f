"""The HTML report of a suite run: one self-contained page that opens offline.

Failures come first: a summary at the top links to every failed step, with the zoomed crop
that shows what went wrong. Each task holds a filmstrip of its screenshots, and each step a
zoomed crop around its target (box, click point, the other places OCR considered) beside a
thumbnail of the whole screen; a failed visual comparison shows baseline, actual and
difference side by side. Thumbnails open the full screenshot (with an SVG overlay in its own
pixels) in a viewer made of CSS ``:target`` rules, with previous and next links: there is no
script, and the Content-Security-Policy forbids any, as well as every remote load. Every
piece of text is escaped: labels may hold screen text and the model's output is untrusted.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from deskpilot.actions.text import plural
from deskpilot.agent.records import Outcome, StepRecord
from deskpilot.agent.reports.pictures import MAX_WIDTH, Picture, focus, load, zoomed
from deskpilot.agent.reports.summary import write_private
from deskpilot.agent.tasks.results import ScriptStep, SuiteResult, TaskResult, TaskStatus
from deskpilot.grounding.geometry import PixelBox

__all__ = ["MAX_WIDTH", "render_report", "task_anchor", "write_report"]

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def task_anchor(n: int) -> str:
    """The fragment of the ``n``-th task's section (1-based), for links into the report."""
    return f"task-{n}"


class _Album:
    """Every screenshot read at most once per report."""

    def __init__(self) -> None:
        self._read: dict[Path, Picture | None] = {}

    def get(self, run_dir: Path | None, rel: str | None) -> Picture | None:
        if run_dir is None or rel is None:
            return None
        path = run_dir / rel
        if path not in self._read:
            self._read[path] = load(path)
        return self._read[path]


@dataclass
class _Shot:
    """One screenshot of a task: where it shows in the page and what is marked on it."""

    anchor: str           # the full-size viewer's id
    step_anchor: str      # the step it belongs to
    rel: str
    title: str
    passed: bool
    pic: Picture
    box: PixelBox | None = None
    points: tuple[tuple[int, int], ...] = ()
    others: tuple[PixelBox, ...] = ()
    _zoom: tuple[str, tuple[int, int]] | None = field(default=None, repr=False)
    _thumb: str | None = field(default=None, repr=False)

    @property
    def area(self) -> PixelBox | None:
        return focus(self.pic.size, box=self.box, points=self.points, others=self.others)

    def zoom(self) -> tuple[str, tuple[int, int]] | None:
        area = self.area
        if area is None:
            return None
        if self._zoom is None:
            self._zoom = self.pic.zoom(area, box=self.box, points=self.points,
                                       others=self.others)
        return self._zoom

    def thumb(self) -> str:
        if self._thumb is None:
            self._thumb = self.pic.thumbnail(self.area)
        return self._thumb


def _img(src: str, size: tuple[int, int] | None, alt: str, cls: str = "") -> str:
    """An image; with its drawn ``size`` the page does not jump as it loads."""
    attrs = f' class="{cls}"' if cls else ""
    if size is not None:
        attrs += f' width="{size[0]}" height="{size[1]}"'
    return f'<img{attrs} src="{src}" alt="{_e(alt)}">'


def _size(pic: Picture) -> str:
    return f"{pic.size[0]}&times;{pic.size[1]}"


def _legend(shot: _Shot) -> str:
    keys = [("box", "target", shot.box is not None), ("point", "click", bool(shot.points)),
            ("others", "candidates", bool(shot.others))]
    return "".join(f'<span class="key key-{cls}">{text}</span>' for cls, text, on in keys if on)


def _evidence(shot: _Shot) -> str:
    """The zoomed crop beside the whole-screen thumbnail that opens the full screenshot."""
    zoom = shot.zoom()
    crop = ""
    if zoom is not None:
        uri, size = zoom
        x1, y1, x2, y2 = shot.area or (0, 0, 0, 0)
        crop = (f'<figure class="zoom"><a href="#{shot.anchor}">'
                f"{_img(uri, size, f'{shot.title}, zoomed')}</a>"
                f"<figcaption>zoomed on ({x1}, {y1}) to ({x2}, {y2}) {_legend(shot)}"
                "</figcaption></figure>")
    thumb = (f'<figure class="thumb"><a href="#{shot.anchor}">'
             f"{_img(shot.thumb(), None, f'{shot.title}, whole screen', 'fit')}</a>"
             f"<figcaption>{_e(shot.rel)} · {_size(shot.pic)} · "
             f'<a href="#{shot.anchor}">full size</a></figcaption></figure>')
    return f'<div class="evidence">{crop}{thumb}</div>'


def _missing(caption: str, rel: str) -> str:
    return f'<p class="missing">{_e(caption)} missing: <code>{_e(rel)}</code></p>'


def _overlay(pic: Picture, shot: _Shot) -> str:
    """SVG over the full screenshot: candidates, the box, and each point ringed and crossed."""
    width, height = pic.size
    r = max(10, round(max(width, height) / 70))  # in image pixels: the same look at any size
    shapes: list[str] = []

    def rect(cls: str, box: Sequence[int]) -> str:
        x1, y1, x2, y2 = box
        return (f'<rect class="{cls}" x="{min(x1, x2)}" y="{min(y1, y2)}" '
                f'width="{abs(x2 - x1)}" height="{abs(y2 - y1)}" '
                'vector-effect="non-scaling-stroke"/>')

    shapes += [rect("cand", other) for other in shot.others]
    if shot.box is not None:
        shapes += [rect("halo", shot.box), rect("box", shot.box)]
    points = shot.points
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
    if not shapes:
        return ""
    return (f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
            f'aria-hidden="true">{"".join(shapes)}</svg>')


def _viewer(shots: Sequence[_Shot], i: int) -> str:
    """The full-size view of one screenshot, stepping to its neighbours: a CSS-only viewer."""
    shot = shots[i]
    prev = (f'<a href="#{shots[i - 1].anchor}">&larr; previous</a>' if i > 0
            else '<span class="off">&larr; previous</span>')
    nxt = (f'<a href="#{shots[i + 1].anchor}">next &rarr;</a>' if i + 1 < len(shots)
           else '<span class="off">next &rarr;</span>')
    pic = shot.pic
    return (f'<div class="viewer" id="{shot.anchor}"><div class="viewer-bar">{prev}'
            f'<span class="viewer-title">{i + 1}/{len(shots)} · {_e(shot.title)} · '
            f"{_size(pic)}</span>{nxt}"
            f'<a class="close" href="#{shot.step_anchor}">close &times;</a></div>'
            f'<div class="frame">{_img(pic.full, pic.size, shot.title)}'
            f"{_overlay(pic, shot)}</div></div>")


def _filmstrip(shots: Sequence[_Shot]) -> str:
    if not shots:
        return ""
    frames = "".join(
        f'<a class="{"pass" if s.passed else "fail"}" href="#{s.anchor}" '
        f'title="{_e(s.title)}">{_img(s.thumb(), None, s.title, "fit")}'
        f"<span>{_e(s.title)}</span></a>" for s in shots)
    return (f'<nav class="filmstrip" aria-label="screenshots of this task">{frames}</nav>')


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


@dataclass
class _TaskPage:
    """One task's part of the page, built in two passes: screenshots first (the filmstrip and
    the viewers need them all), then the steps that show them."""

    n: int
    task: TaskResult
    album: _Album
    shots: list[_Shot] = field(default_factory=list)
    by_rel: dict[str, _Shot] = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return task_anchor(self.n)

    def step_anchor(self, step: ScriptStep) -> str:
        return f"{self.anchor}-step-{step.index}"

    def collect(self) -> None:
        for step in self.task.steps:
            for sub in step.agent_steps:
                self._add(sub.screenshot, f"step {step.index}.{sub.index}",
                          self.step_anchor(step), sub.outcome is not Outcome.REJECTED,
                          points=sub.points)
            self._add(step.screenshot, f"step {step.index}", self.step_anchor(step),
                      step.passed, box=step.box,
                      points=(step.point,) if step.point is not None else (),
                      others=tuple(c.box for c in step.candidates if c.box is not None))

    def _add(self, rel: str | None, title: str, step_anchor: str, passed: bool, *,
             box: PixelBox | None = None, points: Sequence[tuple[int, int]] = (),
             others: tuple[PixelBox, ...] = ()) -> None:
        pic = self.album.get(self.task.run_dir, rel)
        if rel is None or pic is None:
            return
        shot = _Shot(f"{self.anchor}-shot-{len(self.shots) + 1}", step_anchor, rel, title,
                     passed, pic, box, tuple(points), others)
        self.shots.append(shot)
        self.by_rel[rel] = shot

    def shot_html(self, rel: str | None, caption: str) -> str:
        if rel is None:
            return ""
        shot = self.by_rel.get(rel)
        return _evidence(shot) if shot is not None else _missing(caption, rel)

    def viewers(self) -> str:
        return "".join(_viewer(self.shots, i) for i in range(len(self.shots)))


def _comparison(page: _TaskPage, step: ScriptStep) -> str:
    """Baseline | actual | difference, each cut to the changed area with it boxed."""
    run_dir = page.task.run_dir
    panels = [("baseline", step.baseline), ("actual", step.screenshot),
              ("difference", step.diff)]
    figures = []
    for name, rel in panels:
        pic = page.album.get(run_dir, rel)
        if rel is None:
            continue
        if pic is None:
            figures.append(_missing(name, rel))
            continue
        area = focus(pic.size, box=step.box) or (0, 0, *pic.size)
        uri, size = zoomed(pic.image, area, box=step.box)
        figures.append(f'<figure><figcaption><b>{name}</b> · {_e(rel)}</figcaption>'
                       f"{_img(uri, size, f'step {step.index} {name}')}</figure>")
    return f'<div class="compare">{"".join(figures)}</div>' if figures else ""


def _candidates(step: ScriptStep) -> str:
    if not step.candidates:
        return ""
    items = "".join(f"<li><code>{_e(c.text)}</code>"
                    + (f' <span class="where">at {list(c.box)}</span>' if c.box else "")
                    + (f' <span class="where">({_e(c.via)})</span>' if c.via else "")
                    + "</li>" for c in step.candidates)
    word = "other places it matched" if step.passed else "closest or competing texts read"
    return (f'<div class="candidates"><span class="key key-others">{word}</span>'
            f"<ul>{items}</ul></div>")


def _agent_step(page: _TaskPage, sub: StepRecord, *, opened: bool) -> str:
    """One of the agent loop's steps inside a ``do:`` step."""
    what = (f"unusable reply: {sub.error}" if sub.outcome is Outcome.REJECTED
            else f"{sub.summary}: {sub.error}" if sub.outcome is Outcome.DENIED
            else sub.summary)
    where = " → ".join(f"({x}, {y})" for x, y in sub.points)
    model = "".join(f"<h4>{name}</h4>{_pre(text)}" for name, text in
                    (("reasoning", sub.reasoning), ("answer", sub.answer),
                     ("grounding", "\n".join(sub.grounding_lines()))) if text)
    return (f'<li class="agent-step"><div class="step-head"><span class="num">{sub.index}</span>'
            f'<span>{_e(what)}</span>'
            f'<span class="outcome {_e(sub.outcome.value)}">{_e(sub.outcome.value)}</span></div>'
            + _facts([f"at {where}" if where else "", sub.timings.line(),
                      f"{sub.image_tokens} image tokens" if sub.image_tokens else ""])
            + _details("screenshot", page.shot_html(sub.screenshot,
                                                    f"agent step {sub.index} screenshot"),
                       opened=opened)
            + _details("model text", model, cls="model") + "</li>")


def _step(page: _TaskPage, step: ScriptStep, *, failing: bool) -> str:
    """One task-file step: what it did, how it was grounded, and the evidence."""
    state = "passed" if step.passed else "failed"
    source = (f'<span class="badge src src-{_e(step.source.value)}">{_e(step.source.value)}'
              "</span>" if step.source is not None else "")
    phases = [f"{phase} {seconds * 1e3:.0f} ms" for phase, seconds in step.timings.items()]
    where = [f"box {step.box}" if step.box is not None else "",
             f"point {step.point}" if step.point is not None else ""]
    # With a baseline, the screenshot is the middle of the comparison; without one, a
    # difference image (from an older record) is still shown beside it.
    evidence = ("" if step.baseline is not None
                else page.shot_html(step.screenshot, f"step {step.index} screenshot"))
    if step.baseline is not None or step.diff is not None:
        evidence += _comparison(page, step)
    agent = "".join(_agent_step(page, sub, opened=failing and n == len(step.agent_steps))
                    for n, sub in enumerate(step.agent_steps, 1))
    return (f'<li class="step {state}{" failing" if failing else ""}" '
            f'id="{page.step_anchor(step)}"><div class="step-head">'
            f'<span class="num">{step.index}</span><code class="label">{_e(step.label)}</code>'
            f'<span class="badge {state}">{"pass" if step.passed else "fail"}</span>{source}'
            f'<span class="badge kind">{_e(step.kind)}</span>'
            f'<span class="where">line {step.file_line}</span>'
            f'<span class="time">{_duration(step.seconds)}</span></div>'
            f'<p class="step-message">{_e(step.message)}</p>'
            + _facts(where + phases) + _candidates(step)
            + (f'<ol class="agent-steps">{agent}</ol>' if agent else "")
            + evidence
            + _details("model text", _pre(step.model_text), opened=failing, cls="model")
            + "</li>")


def _task(page: _TaskPage) -> str:
    """A task's section, open when it did not pass."""
    task = page.task
    failed = task.failed_step
    steps = "".join(_step(page, s, failing=s is failed) for s in task.steps)
    opened = " open" if task.status is not TaskStatus.PASSED else ""
    run_dir = (f'<p class="file">run directory: <code>{_e(task.run_dir)}</code></p>'
               if task.run_dir is not None else "")
    return (f'<section class="task {task.status.value}" id="{page.anchor}"><details{opened}>'
            f"<summary>{_status_badge(task.status)}<span class=\"name\">{_e(task.name)}</span>"
            f'<span class="file">{_e(task.file)}</span>'
            f'<span class="time">{_duration(task.seconds)}</span></summary>'
            f'<div class="task-body"><p class="task-message">{_e(task.message)}</p>{run_dir}'
            f"{_filmstrip(page.shots)}"
            f'<ol class="steps">{steps}</ol></div></details></section>')


def _failure(page: _TaskPage) -> str:
    """One entry of the failures summary: the task, the step, why, and its zoomed crop."""
    task, step = page.task, page.task.failed_step
    head = (f'{_status_badge(task.status)} <a href="#{page.anchor}">{_e(task.name)}</a> '
            f'<span class="file">{_e(task.file)}</span>')
    if step is None:
        return (f'<li><div class="failure-text">{head}'
                f'<p class="why">{_e(task.message)}</p></div></li>')
    shot = page.by_rel.get(step.screenshot or "")
    zoom = shot.zoom() if shot is not None else None
    picture = ""
    if shot is not None:
        uri, size = zoom if zoom is not None else (shot.thumb(), None)
        picture = (f'<a class="failure-shot" href="#{page.step_anchor(step)}">'
                   f"{_img(uri, size, f'step {step.index}', 'fit')}</a>")
    return (f'<li>{picture}<div class="failure-text">{head}'
            f'<p><a href="#{page.step_anchor(step)}">step {step.index}</a> '
            f'<span class="where">line {step.file_line}</span> '
            f'<code class="label">{_e(step.label)}</code></p>'
            f'<p class="why">{_e(step.message)}</p></div></li>')


def _failures(pages: Sequence[_TaskPage]) -> str:
    failed = [p for p in pages if p.task.status is not TaskStatus.PASSED]
    if not failed:
        return ""
    word = "task" if len(failed) == 1 else "tasks"
    return (f'<section class="failures" id="failures"><h2>{len(failed)} {word} did not pass'
            f'</h2><ol>{"".join(_failure(p) for p in failed)}</ol></section>')


def _nav_item(page: _TaskPage) -> str:
    task = page.task
    return (f'<li>{_status_badge(task.status)} <a href="#{page.anchor}">{_e(task.name)}</a> '
            f'<span class="time">{_duration(task.seconds)}</span> '
            f'<span class="where">{plural(len(task.steps), "step")}</span></li>')


def _header(suite: SuiteResult, pages: Sequence[_TaskPage]) -> str:
    counts = suite.counts()
    verdict = TaskStatus.PASSED if suite.passed else TaskStatus.FAILED
    width, height = suite.screen_size
    facts = (("total time", _duration(suite.seconds)), ("started", suite.started),
             ("display", suite.display or "—"), ("screen", f"{width} x {height}"))
    numbers = "".join(f'<span class="n-{s.value}">{counts[s.value]} {s.value}</span>'
                      for s in TaskStatus if counts[s.value] or s is TaskStatus.PASSED)
    items = "".join(_nav_item(p) for p in pages)
    return (f'<header class="suite {verdict.value}"><div>'
            f"<h1>deskpilot run {_status_badge(verdict)}</h1>"
            f'<p class="counts">{numbers}<span>{len(suite.tasks)} tasks</span></p>'
            '<dl class="facts">'
            + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
            + f"</dl>{_failures(pages)}<nav><ol>{items}</ol></nav></div></header>")


def render_report(suite: SuiteResult) -> str:
    """The report page as one HTML string."""
    css = (resources.files("deskpilot.agent") / "data" / "report.css").read_text(encoding="utf-8")
    verdict = "passed" if suite.passed else "failed"
    counts = suite.counts()
    title = f"deskpilot run — {verdict} ({counts['passed']}/{len(suite.tasks)} passed)"
    album = _Album()
    pages = [_TaskPage(n, task, album) for n, task in enumerate(suite.tasks, 1)]
    for page in pages:
        page.collect()
    tasks = "".join(_task(p) for p in pages)
    viewers = "".join(p.viewers() for p in pages)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{css}</style></head><body>"
            f"{_header(suite, pages)}<main>{tasks}</main>{viewers}</body></html>\n")


def write_report(directory: Path, suite: SuiteResult) -> Path:
    """Write ``directory/index.html`` (directory 0700 when new, file 0600); return its path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "index.html"
    write_private(path, render_report(suite).encode("utf-8"))
    return path
