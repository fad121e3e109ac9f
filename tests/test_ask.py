"""`deskpilot ask`: a question about a rendered chart, answered by a recording and by the tiny
model through the real llama.cpp path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from deskpilot.agent.cli.ask import ask_request
from deskpilot.agent.cli.main import main
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.preprocess import prepare
from deskpilot.models.runtime import Mode

QUESTION = "Which day has the tallest bar?"


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    img = Image.new("RGB", (640, 400), "white")
    draw = ImageDraw.Draw(img)
    for i, (name, value) in enumerate([("Mon", 120), ("Tue", 260), ("Wed", 180)]):
        x = 80 + i * 180
        draw.rectangle([x, 360 - value, x + 100, 360], fill=(40, 90, 200))
        draw.text((x + 35, 368), name, fill="black")
    path = tmp_path / "chart.png"
    img.save(path)
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "ask.jsonl"
    path.write_text(json.dumps({"answer": "Tue", "reasoning": "Tue reaches 260; Mon 120, "
                                "Wed 180."}) + "\n")
    return path


def test_request_puts_the_image_first() -> None:
    rgb = np.zeros((200, 300, 3), np.uint8)
    image = prepare(Frame(rgb, ScreenGeometry(0, 0, 300, 200), 0.0), max_patches=256)
    request = ask_request(QUESTION, image, mode=Mode.REASONING, max_answer_tokens=64,
                          max_reasoning_tokens=128, temperature=0.0)
    assert request.prompt == "<image>\n" + QUESTION and request.grammar is None
    assert ask_request(QUESTION, None, mode=Mode.DIRECT, max_answer_tokens=64,
                       max_reasoning_tokens=128, temperature=0.0).prompt == QUESTION


def test_trace_then_the_answer_on_its_own(chart: Path, recording: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", QUESTION, "--image", str(chart), "--replay", str(recording)]) == 0
    out = capsys.readouterr().out
    trace, answer = out.rstrip("\n").rsplit("\n", 1)
    assert "Tue reaches 260" in trace and "<think>" not in trace
    assert answer == "Tue"


def test_json_for_scripts(chart: Path, recording: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", QUESTION, "--image", str(chart), "--replay", str(recording),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == "Tue" and data["reasoning"].startswith("Tue reaches")
    assert data["mode"] == "reasoning" and data["image"] == str(chart)


def test_image_and_screen_together_is_a_usage_error(chart: Path, recording: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ask", QUESTION, "--image", str(chart), "--screen", "--replay", str(recording)])
    assert exc.value.code == 2
    assert main(["ask", QUESTION, "--image", str(chart.with_name("none.png")),
                 "--replay", str(recording)]) == 2


@pytest.mark.llama
def test_tiny_model_answers_about_the_chart(chart: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", QUESTION, "--image", str(chart), "--model", "tiny", "--json",
                 "--max-tokens", "16", "--max-reasoning-tokens", "16", "--gpu-layers", "0",
                 "--max-patches", "256"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["image_tokens"] > 0 and data["model"].endswith(".gguf")
    assert data["output_tokens"] <= 16 + 16 + 1  # both limits held (plus the closing tag)
    assert isinstance(data["answer"], str)
