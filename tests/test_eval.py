"""`deskpilot eval grounding` and `eval make-set`: readers, scoring, resuming, a made set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deskpilot.agent.cli.main import main as deskpilot
from deskpilot.agent.eval.grounding import EvalOptions, evaluate
from deskpilot.agent.eval.screenspot import DatasetError, read_dataset
from deskpilot.models.scripted import ScriptedRuntime


def _png(path: Path, size: tuple[int, int] = (400, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


V2_MOBILE = """[
  {"img_filename": "a.png", "bbox": [40, 20, 40, 20], "instruction": "open settings",
   "data_type": "icon", "data_source": "android"},
  {"img_filename": "a.png", "bbox": [200, 100, 100, 50], "instruction": "the OK button",
   "data_type": "text", "data_source": "ios"},
  {"img_filename": "a.png", "bbox": [1, 2, 3], "instruction": "broken box",
   "data_type": "text", "data_source": "ios"},
  {"img_filename": "a.png", "bbox": [1, 2, 3, 4], "data_type": "text", "data_source": "ios"}
]
"""


def _v2(root: Path) -> Path:
    _png(root / "screenspotv2_image" / "a.png")
    (root / "screenspot_mobile_v2.json").write_text(V2_MOBILE)
    (root / "screenspot_web_v2.json").write_text(
        '[{"img_filename": "a.png", "bbox": [0, 0, 10, 10], "instruction": "x",\n'
        '  "data_type": "icon", "data_source": "shop"},\n'
        '  {"img_filename": "a.png", "bbox": [0, 0, 10, 10], "instruction": oops}]\n')
    return root


def _pro(root: Path) -> Path:
    _png(root / "images" / "p.png", (800, 600))
    (root / "annotations").mkdir(parents=True)
    records = [
        {"img_filename": "p.png", "bbox": [100, 100, 200, 150], "img_size": [800, 600],
         "instruction": "run the tests", "platform": "macos", "application": "vscode",
         "ui_type": "icon", "group": "Dev"},
        {"img_filename": "p.png", "bbox": [100, 100, 900, 150], "img_size": [800, 600],
         "instruction": "too wide", "platform": "macos", "application": "vscode",
         "ui_type": "text", "group": "Dev"},
        {"img_filename": "../../etc/passwd", "bbox": [1, 1, 2, 2], "img_size": [800, 600],
         "instruction": "escape", "platform": "macos", "application": "vscode",
         "ui_type": "text", "group": "Dev"},
    ]
    (root / "annotations" / "vscode_macos.json").write_text(  # one record a line: lines 2-4
        "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return root


def test_v2_reader_takes_xywh_and_reports_bad_records_by_line(tmp_path: Path) -> None:
    data = read_dataset(_v2(tmp_path))
    assert data.layout == "screenspot-v2"
    assert [r.instruction for r in data.records] == ["open settings", "the OK button", "x"]
    first = data.records[0]
    assert first.box == (40, 20, 80, 40)  # xywh -> xyxy
    assert first.groups == {"platform": "mobile", "type": "icon", "source": "android"}
    assert first.where.endswith("screenspot_mobile_v2.json:2")
    mobile = str(tmp_path / "screenspot_mobile_v2.json")
    web = str(tmp_path / "screenspot_web_v2.json")
    assert data.errors == (
        f"{mobile}:6: record 2: bbox must be a list of 4 numbers",
        f"{mobile}:8: record 3: missing field 'instruction'",
        f"{web}:3:68: not JSON: Expecting value",
    )


def test_pro_reader_takes_xyxy_and_img_size(tmp_path: Path) -> None:
    data = read_dataset(_pro(tmp_path))
    assert data.layout == "screenspot-pro"
    (record,) = data.records
    assert record.box == (100, 100, 200, 150) and record.size == (800, 600)
    assert record.groups == {"platform": "macos", "application": "vscode", "type": "icon",
                             "group": "Dev"}
    assert len(data.errors) == 2
    assert ":3: record 1: bbox [100.0, 100.0, 900.0, 150.0] lies outside" in data.errors[0]
    assert ":4: record 2: img_filename '../../etc/passwd' leaves" in data.errors[1]


def test_unknown_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no ScreenSpot data found"):
        read_dataset(tmp_path)


def test_scoring_and_resume(tmp_path: Path) -> None:
    data = read_dataset(_v2(tmp_path / "set"))
    # Image 400x200: "open settings" is [0.1, 0.1, 0.2, 0.2]; the other two get misses.
    answers = ["[0.1, 0.1, 0.2, 0.2]", "[0.0, 0.0, 0.1, 0.1]"]
    first = ScriptedRuntime(answers)
    out = tmp_path / "out"
    evaluate(data, first, out, EvalOptions(limit=2))
    assert len(first.requests) == 2
    assert first.requests[0].prompt.startswith("<image>\nLocate the the UI element")
    # An interrupted write leaves a torn line; the next run drops it and goes on.
    with (out / "predictions.jsonl").open("a") as fh:
        fh.write('{"key": "scree')
    rest = ScriptedRuntime(["[0.9, 0.9, 0.1, 0.1]"])  # reversed corners, centre still (0.5,0.5)
    summary = evaluate(data, rest, out, EvalOptions())
    assert len(rest.requests) == 1  # only the record not yet done
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["hit"] for p in lines] == [True, False, False]
    assert lines[2]["note"] == "x1 > x2: swapped; y1 > y2: swapped"
    assert summary["overall"] == {"n": 3, "hits": 1, "accuracy": 33.33}
    assert summary["groups"]["platform"]["mobile"]["hits"] == 1
    assert len(summary["bad_records"]) == 3
    page = (out / "misses.html").read_text()
    assert page.count("<figure>") == 2 and "the OK button" in page


# ------------------------------------------------------------------ a made set, end to end


@pytest.fixture(scope="module")
def made_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("set")
    assert deskpilot(["eval", "make-set", str(root), "--sizes", "1920x1080"]) == 0
    return root


@pytest.mark.display
def test_made_set_is_labelled_and_checked(made_set: Path) -> None:
    data = read_dataset(made_set)
    assert not data.errors
    kinds = {r.groups["type"] for r in data.records}
    assert kinds == {"window", "text"}
    sources = {r.groups["source"] for r in data.records}
    assert {"x11-geometry:xcalc", "ocr:xcalc"} <= sources
    windows = {r.groups["source"].split(":")[1]: r.box for r in data.records
               if r.groups["type"] == "window"}
    for r in data.records:  # every text box lies inside its app's window
        if r.groups["type"] == "text":
            x1, y1, x2, y2 = windows[r.groups["source"].split(":")[1]]
            cx, cy = (r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2
            assert x1 <= cx <= x2 and y1 <= cy <= y2


@pytest.mark.display
def test_scripted_truth_scores_exactly_100(made_set: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert deskpilot(["eval", "grounding", str(made_set), "--out", str(out),
                      "--replay", str(made_set / "truth-answers.jsonl")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["accuracy"] == 100.0
    assert summary["overall"]["n"] == len(read_dataset(made_set).records)
    assert "overall  100.0%" in capsys.readouterr().out


@pytest.mark.display
@pytest.mark.llama
def test_tiny_model_runs_and_scores_in_range(made_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert deskpilot(["eval", "grounding", str(made_set), "--out", str(out), "--model", "tiny",
                      "--max-patches", "256", "--limit", "4", "--gpu-layers", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 4 and 0.0 <= summary["overall"]["accuracy"] <= 100.0
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(p["box"] is not None for p in lines)  # the grammar always gives a box
