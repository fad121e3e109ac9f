"""The HTML report: self-contained, escaped, private, with one embedded image per screenshot."""

from __future__ import annotations

import base64
import io
import json
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from deskpilot.agent.records import Outcome, StepRecord, Timings
from deskpilot.agent.reports.html import MAX_WIDTH, render_report, write_report
from deskpilot.agent.reports.pictures import BOX, CANDIDATE, POINT, THUMB_WIDTH, ZOOM_SIZE
from deskpilot.agent.reports.summary import write_summary
from deskpilot.agent.tasks.results import (
    Candidate,
    ScriptStep,
    Source,
    SuiteResult,
    TaskResult,
    TaskStatus,
)

HOSTILE_MODEL_TEXT = ('I think the button is <script>alert(1)</script> there.\n'
                      'Answer: "><img src=x onerror=alert(2)>')
HOSTILE_NAME = 'save <b>as</b> & "quote"'


def screenshot(path: Path, size: tuple[int, int] = (640, 400), *, button: str = "OK") -> str:
    """A small fake desktop with a window and a button; returns the path relative to run_dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (58, 110, 165))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w // 8, h // 8, w * 7 // 8, h * 7 // 8), fill=(236, 236, 236),
                   outline=(40, 40, 40))
    draw.rectangle((w // 8, h // 8, w * 7 // 8, h // 8 + 24), fill=(60, 60, 90))
    draw.text((w // 8 + 8, h // 8 + 6), "Save document", fill=(255, 255, 255))
    draw.rectangle((w // 2 - 40, h // 2 - 14, w // 2 + 40, h // 2 + 14), fill=(210, 210, 220),
                   outline=(0, 0, 0))
    draw.text((w // 2 - 8, h // 2 - 6), button, fill=(0, 0, 0))
    image.save(path)
    return f"{path.parent.name}/{path.name}"


def make_suite(root: Path) -> SuiteResult:
    """Three tasks: one passed, one failed (do: step, diff, hostile text), one error."""
    ok_dir, bad_dir, err_dir = root / "run-ok", root / "run-bad", root / "run-err"
    ok_steps = (
        ScriptStep(index=1, kind="click", label='click "OK"', file_line=4, passed=True,
                   message="clicked", source=Source.OCR, box=(280, 186, 360, 214),
                   point=(320, 200), screenshot=screenshot(ok_dir / "screens/step-0001.png"),
                   seconds=0.41, timings={"capture": 0.02, "ocr": 0.35, "act": 0.04}),
        ScriptStep(index=2, kind="type", label="type: hello", file_line=5, passed=True,
                   message="typed 5 characters",
                   screenshot=screenshot(ok_dir / "screens/step-0002.png"), seconds=0.12),
    )
    agent_steps = (
        StepRecord(index=1, outcome=Outcome.EXECUTED, summary="click the File menu",
                   answer='{"action": "click"}', reasoning="The File menu is top left.",
                   grounding=({"target": "the File menu", "answer": "[0.01, 0.02, 0.05, 0.04]",
                               "box": [0.01, 0.02, 0.05, 0.04], "note": "",
                               "reused_image_tokens": 920},),
                   points=((70, 62),), screenshot="screens/agent-0001.png",
                   timings=Timings(capture=0.01, model=1.5, act=0.03)),
        StepRecord(index=2, outcome=Outcome.EXECUTED, summary="drag the slider",
                   answer='{"action": "drag"}', points=((200, 300), (420, 300)),
                   screenshot="screens/agent-0002.png", timings=Timings(model=1.2)),
        StepRecord(index=3, outcome=Outcome.REJECTED, summary="", answer="nonsense <b>",
                   error="not JSON", screenshot="screens/agent-0003.png"),  # never written
    )
    screenshot(bad_dir / "screens/agent-0001.png")
    screenshot(bad_dir / "screens/agent-0002.png")
    diff = bad_dir / "screens/step-0003-diff.png"
    diff_image = Image.new("RGB", (2000, 1000), (0, 0, 0))
    ImageDraw.Draw(diff_image).rectangle((960, 485, 1040, 515), fill=(255, 0, 255))
    diff_image.save(diff)
    bad_steps = (
        ScriptStep(index=1, kind="click", label="click at 10, 20", file_line=3, passed=True,
                   message="clicked", source=Source.COORDS, point=(10, 20),
                   screenshot=screenshot(bad_dir / "screens/step-0001.png"), seconds=0.05),
        ScriptStep(index=2, kind="do", label="do: open the File menu", file_line=4,
                   passed=True, message="done", source=None, seconds=2.9,
                   agent_steps=agent_steps),
        ScriptStep(index=3, kind="click", label="click <script>Save</script>", file_line=9,
                   passed=False, message='no "Save" button </details> on the screen',
                   source=Source.MODEL, box=(1500, 400, 1700, 460), point=(1600, 430),
                   screenshot=screenshot(bad_dir / "screens/step-0003.png", (2000, 1000),
                                         button="Cancel"),
                   diff="screens/step-0003-diff.png", seconds=3.2,
                   timings={"capture": 0.03, "model": 3.1}, model_text=HOSTILE_MODEL_TEXT,
                   candidates=(Candidate("Save as…", (1400, 300, 1480, 330)),
                               Candidate("Saved <i>"))),
        ScriptStep(index=4, kind="expect", label="expect: Saved", file_line=11, passed=True,
                   message="seen", screenshot="screens/step-0004.png"),  # never written
    )
    err_steps = (ScriptStep(index=1, kind="launch", label="launch: gedit", file_line=2,
                            passed=False, message="gedit: command not found"),)
    tasks = (
        TaskResult(name="log in", file=Path("tasks/login.yaml"), status=TaskStatus.PASSED,
                   message="2 steps passed", steps=ok_steps, seconds=0.6, run_dir=ok_dir),
        TaskResult(name=HOSTILE_NAME, file=Path("tasks/save.yaml"), status=TaskStatus.FAILED,
                   message="step 3 failed", steps=bad_steps, seconds=6.2, run_dir=bad_dir),
        TaskResult(name="edit", file=Path("tasks/edit.yaml"), status=TaskStatus.ERROR,
                   message="setup failed: gedit: command not found", steps=err_steps,
                   seconds=0.01, run_dir=err_dir),
    )
    return SuiteResult(tasks=tasks, seconds=6.9, started="2025-05-04T10:11:12+02:00",
                       display=":99", screen_size=(1280, 800))


# Screenshots in make_suite that exist on disk: ok steps 1-2, agent steps 1-2, bad steps 1, 3.
EXISTING_SHOTS = 2 + 2 + 2


def visual_suite(root: Path) -> SuiteResult:
    """One task whose screenshot comparison failed: baseline, actual and difference kept."""
    run_dir = root / "run-visual"
    baseline = screenshot(run_dir / "screens/home-baseline.png", (1920, 1080), button="OK")
    actual = screenshot(run_dir / "screens/home.png", (1920, 1080), button="Cancel")
    diff = run_dir / "screens/home-diff.png"
    Image.new("RGB", (1920, 1080), (60, 60, 60)).save(diff)
    step = ScriptStep(index=1, kind="screenshot", label="screenshot: {name: 'home'}",
                      file_line=3, passed=False, message="1234 pixels changed",
                      box=(930, 525, 990, 550), screenshot=actual, baseline=baseline,
                      diff="screens/home-diff.png")
    task = TaskResult(name="looks the same", file=Path("tasks/visual.yaml"),
                      status=TaskStatus.FAILED, message="step 1 failed", steps=(step,),
                      seconds=0.2, run_dir=run_dir)
    return SuiteResult(tasks=(task,), seconds=0.2, started="now", screen_size=(1920, 1080))


def images(page: str) -> list[tuple[str, Image.Image]]:
    """Every embedded image, decoded, with its alt text."""
    out = []
    for tag, attrs in _tags(page):
        if tag == "img":
            data = base64.b64decode((attrs["src"] or "").split(",", 1)[1])
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == "JPEG"
                out.append((attrs["alt"] or "", image.convert("RGB")))
    return out


def near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of ``image`` are close to ``colour`` (JPEG shifts drawn lines a little)."""
    rgb = np.asarray(image).astype(int)
    return int((np.abs(rgb - colour).max(axis=2) <= tolerance).sum())


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_report_is_self_contained_and_private(tmp_path: Path) -> None:
    out = tmp_path / "report"
    path = write_report(out, make_suite(tmp_path))
    assert path == out / "index.html"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    page = path.read_text(encoding="utf-8")
    # Base64 may hold "//", so look for URLs outside the data URIs.
    text = re.sub(r'"data:image/jpeg;base64,[A-Za-z0-9+/=]+"', '""', page)
    assert not re.search(r"https?:|ftp:|//[a-z]", text, re.IGNORECASE)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    tags = _tags(page)
    for tag, attrs in tags:
        if "src" in attrs:
            assert (attrs["src"] or "").startswith("data:image/jpeg;base64,"), tag
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#"), attrs["href"]
    assert not [t for t, _ in tags if t in {"link", "iframe", "object", "embed", "script"}]
    # Each screenshot on disk opens full size in exactly one viewer; the missing ones in none.
    viewers = [a for t, a in tags if t == "div" and a.get("class") == "viewer"]
    assert len(viewers) == EXISTING_SHOTS
    assert page.count('class="frame"><img') == EXISTING_SHOTS


def test_screenshots_are_jpeg_and_wide_ones_downscaled(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    shown = images(page)
    widths = [image.width for _, image in shown]
    assert max(widths) == MAX_WIDTH  # the 2000-pixel screenshot, full size in its viewer
    assert widths.count(MAX_WIDTH) == 1
    crops = [image for alt, image in shown if alt.endswith("zoomed")]
    thumbs = [image for alt, image in shown if alt.endswith("whole screen")]
    # The type step marks nothing: it has a thumbnail and no crop.
    assert (len(crops), len(thumbs)) == (EXISTING_SHOTS - 1, EXISTING_SHOTS)
    assert all(c.width <= ZOOM_SIZE[0] and c.height <= ZOOM_SIZE[1] for c in crops)
    assert all(t.width == THUMB_WIDTH for t in thumbs)
    # The overlay of the full view stays in the original pixels: marks drawn where recorded.
    assert 'viewBox="0 0 2000 1000"' in page
    assert '<rect class="box" x="1500" y="400" width="200" height="60"' in page
    assert 'cx="1600" cy="430"' in page
    assert '<rect class="cand" x="1400" y="300" width="80" height="30"' in page


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "onerror" not in "".join(str(a) for _, a in _tags(page))
    assert "save &lt;b&gt;as&lt;/b&gt; &amp; &quot;quote&quot;" in page
    assert "click &lt;script&gt;Save&lt;/script&gt;" in page
    assert "&lt;/details&gt; on the screen" in page
    assert "Saved &lt;i&gt;" in page and "nonsense &lt;b&gt;" in page
    # Every element that opened was one this module writes.
    assert {t for t, _ in _tags(page)} <= {
        "html", "head", "meta", "title", "style", "body", "header", "div", "h1", "h4", "p",
        "span", "dl", "dt", "dd", "nav", "ol", "ul", "li", "a", "main", "section", "details",
        "summary", "code", "pre", "figure", "img", "figcaption", "svg", "rect", "circle",
        "path", "g", "polyline", "text", "h2", "b"}


def test_layout_marks_failures_and_sources(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    tags = _tags(page)
    sections = [a for t, a in tags if t == "section" and a["class"] != "failures"]
    assert [a["class"] for a in sections] == ["task passed", "task failed", "task error"]
    # The task's <details> follows its <section>: closed when passed, open otherwise.
    opened = [tags[i + 1][1] for i, (t, a) in enumerate(tags)
              if t == "section" and a["class"] != "failures"]
    assert ["open" in a for a in opened] == [False, True, True]
    failing = [a for t, a in tags if t == "li" and "failing" in (a.get("class") or "")]
    assert [a["id"] for a in failing] == ["task-2-step-3", "task-3-step-1"]
    assert 'href="#task-2-step-3"' in page
    for source in ("ocr", "model", "coords"):
        assert f'class="badge src src-{source}"' in page
    assert "capture 30 ms" in page and "model 3100 ms" in page
    assert "Save as…" in page
    assert "1 passed" in page and "1 failed" in page and "1 error" in page
    assert ":99" in page and "1280 x 800" in page and "2025-05-04T10:11:12+02:00" in page


def test_do_steps_and_missing_screenshots(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    assert page.count('<li class="agent-step">') == 3
    assert "click the File menu" in page and "unusable reply: not JSON" in page
    assert "The File menu is top left." in page
    # the planner's text and the grounding call's answer, one record, both shown
    assert "locate &#x27;the File menu&#x27; -&gt; [0.01, 0.02, 0.05, 0.04]" in page
    assert "image reused (920 tokens)" in page
    assert '<polyline class="path" points="200,300 420,300"' in page  # the drag
    assert "screens/agent-0003.png" in page and "screens/step-0004.png" in page
    assert page.count("screenshot missing") == 2
    # The drag's points in the full view; its zoomed crop spans both ends.
    assert "step 2.2" in page


def test_report_without_run_dir_or_steps(tmp_path: Path) -> None:
    task = TaskResult(name="empty", file=Path("t.yaml"), status=TaskStatus.ERROR,
                      message="display died", steps=(
                          ScriptStep(index=1, kind="click", label="click OK", file_line=1,
                                     passed=False, message="x",
                                     screenshot="screens/step-0001.png"),),
                      seconds=0.0)
    suite = SuiteResult(tasks=(task,), seconds=0.0, started="now")
    page = write_report(tmp_path / "a" / "b", suite).read_text(encoding="utf-8")
    assert "screenshot missing" in page and "display died" in page
    empty = write_report(tmp_path / "none", SuiteResult(tasks=(), seconds=0, started="now"))
    assert "0 passed" in empty.read_text(encoding="utf-8")


def test_write_report_overwrites(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    first = write_report(tmp_path / "r", suite)
    second = write_report(tmp_path / "r", suite)
    assert first == second and [p.name for p in (tmp_path / "r").iterdir()] == ["index.html"]


def test_summary_json(tmp_path: Path) -> None:
    suite = make_suite(tmp_path)
    path = tmp_path / "out" / "summary.json"
    write_summary(path, suite)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["passed"] is False
    assert data["counts"] == {"passed": 1, "failed": 1, "error": 1}
    assert data["total"] == 3 and data["seconds"] == 6.9 and data["display"] == ":99"
    assert data["screen_size"] == [1280, 800] and data["started"] == suite.started
    assert [t["status"] for t in data["tasks"]] == ["passed", "failed", "error"]
    assert data["tasks"][1]["failed_step"]["index"] == 3
    assert data["tasks"][1]["name"] == HOSTILE_NAME
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp file left


def test_failures_come_first_and_link_to_each_failed_step(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    summary = page[page.index('<section class="failures"'):page.index("</section>")]
    assert page.index('<section class="failures"') < page.index("<main>")
    assert "2 tasks did not pass" in summary
    assert 'href="#task-2-step-3"' in summary and 'href="#task-3"' in summary
    assert "no &quot;Save&quot; button &lt;/details&gt; on the screen" in summary
    assert "gedit: command not found" in summary
    assert 'href="#task-1' not in summary  # the passed task is not listed


def test_each_step_shows_a_marked_crop_beside_a_thumbnail(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    shown = dict(images(page))
    crop = shown["step 3, zoomed"]
    # The target's box, the click marker and the other OCR candidate are drawn in the crop.
    assert near(crop, BOX) > 100 and near(crop, POINT) > 30 and near(crop, CANDIDATE) > 50
    thumb = shown["step 3, whole screen"]
    assert thumb.width == THUMB_WIDTH and near(thumb, BOX) > 20  # the crop's area, outlined
    ok = next(image for alt, image in images(page) if alt == "step 1, zoomed")  # task 1
    assert near(ok, CANDIDATE) == 0 and near(ok, BOX) > 100
    assert "closest or competing texts read" in page and "at [1400, 300, 1480, 330]" in page


def test_the_filmstrip_and_viewers_step_through_every_screenshot(tmp_path: Path) -> None:
    page = render_report(make_suite(tmp_path))
    tags = _tags(page)
    strip = page[page.index('<nav class="filmstrip"', page.index('id="task-2"')):]
    strip = strip[:strip.index("</nav>")]
    links = re.findall(r'href="#(task-2-shot-\d+)"', strip)
    assert links == [f"task-2-shot-{n}" for n in range(1, 5)]  # step 1, agent 1-2, step 3
    assert 'class="fail"' in strip  # the failed step's frame stands out
    viewers = {a["id"]: i for i, (t, a) in enumerate(tags) if a.get("class") == "viewer"}
    assert set(links) <= set(viewers)
    # Each viewer links to its neighbours and back to its step.
    second = page[page.index('id="task-2-shot-2"'):page.index('id="task-2-shot-3"')]
    assert 'href="#task-2-shot-1"' in second and 'href="#task-2-shot-3"' in second
    assert 'href="#task-2-step-2"' in second  # agent step 1 belongs to step 2
    assert ".viewer:target" in page  # shown by CSS alone


def test_a_failed_comparison_shows_baseline_actual_and_difference(tmp_path: Path) -> None:
    page = render_report(visual_suite(tmp_path))
    compare = page[page.index('<div class="compare">'):]
    compare = compare[:compare.index("</div>")]
    assert [m for m in re.findall(r"<b>(\w+)</b>", compare)] == [
        "baseline", "actual", "difference"]
    shown = dict(images(page))
    baseline, actual = shown["step 1 baseline"], shown["step 1 actual"]
    assert baseline.size == actual.size == shown["step 1 difference"].size
    assert baseline.width <= ZOOM_SIZE[0]  # zoomed on the changed area, not the whole screen
    for name in ("baseline", "actual", "difference"):
        assert near(shown[f"step 1 {name}"], BOX) > 100, name  # the changed area, boxed
    assert not np.array_equal(np.asarray(baseline), np.asarray(actual))


def test_summary_and_console_say_where_the_report_is_and_how_to_open_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deskpilot.agent.cli.console import open_command, print_suite
    from deskpilot.agent.reports.outputs import Outputs

    suite = make_suite(tmp_path)
    outputs = Outputs(summary=tmp_path / "out" / "summary.json", report=tmp_path / "out" / "r")
    assert print_suite(suite, outputs) == 1
    page = (tmp_path / "out" / "r" / "index.html").absolute()
    data = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert data["report"] == str(page)
    urls = [t["report_url"] for t in data["tasks"]]
    assert urls == [page.as_uri() + "#task-1", page.as_uri() + "#task-2-step-3",
                    page.as_uri() + "#task-3-step-1"]
    # Every link points at an element of the page.
    html = page.read_text(encoding="utf-8")
    for url in urls:
        assert f'id="{url.split("#")[1]}"' in html
    out = capsys.readouterr().out.splitlines()
    assert f"report:  {page}" in out
    assert any(line.split()[:2] == ["FAILED", "save"] and line.endswith(urls[1]) for line in out)
    assert out[-1] == f"open the report: {open_command(page)}"
    assert open_command(Path("/tmp/a b.html")) in {"xdg-open '/tmp/a b.html'",
                                                   "open '/tmp/a b.html'",
                                                   "start \"\" '/tmp/a b.html'"}


def test_summary_without_a_report_has_no_links(tmp_path: Path) -> None:
    from deskpilot.agent.reports.summary import summary_json

    data = summary_json(make_suite(tmp_path))
    assert data["report"] is None and all("report_url" not in t for t in data["tasks"])
