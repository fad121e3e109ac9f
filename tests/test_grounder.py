"""The native grounding call: prompt, grammar, parser; the loop as planner + grounder."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from deskpilot.actions.executor import RecordingDevice
from deskpilot.actions.parse import ActionError, parse_plan
from deskpilot.actions.schema import action_grammar, describe_actions
from deskpilot.agent.loop import run_agent
from deskpilot.agent.records import Outcome, Status, StepRecord
from deskpilot.agent.rundir import RunDir
from deskpilot.agent.settings import ModelSettings
from deskpilot.grounding.capture import FakeScreen, Frame
from deskpilot.grounding.geometry import ScreenGeometry
from deskpilot.grounding.preprocess import prepare
from deskpilot.models.grounder import (
    BOX_GRAMMAR,
    BoxError,
    Grounder,
    GroundingPrompt,
    native_prompt,
    native_request,
    parse_box,
)
from deskpilot.models.phi4rv_template import PHI4RV_CHAT_TEMPLATE
from deskpilot.models.prompt import agent_prompt, render_chat
from deskpilot.models.runtime import Mode, Request
from deskpilot.models.scripted import ScriptedRuntime
from tests.helpers.fakes import FakeClock

SENTENCE = ("Locate the the UI element this instruction describes: the Save button. Output its "
            "bbox coordinates using the format of [x1, y1, x2, y2] using relative coordinates "
            "from 0.0000 to 1.0000.")


def test_native_prompt_is_the_published_one_image_first() -> None:
    assert native_prompt("the Save button") == "<image>\n" + SENTENCE
    assert native_prompt("  the Save\nbutton. ") == "<image>\n" + SENTENCE  # one sentence
    request = native_request("the Save button", _image())
    assert request.mode is Mode.DIRECT and request.temperature == 0.0
    assert request.grammar == BOX_GRAMMAR


def test_fallback_template_is_the_models_own_verbatim() -> None:
    assert len(PHI4RV_CHAT_TEMPLATE) == 2617
    assert hashlib.sha256(PHI4RV_CHAT_TEMPLATE.encode()).hexdigest() == (
        "b763247b7f52d0c734cf30d623ee4a4a694bc3619eb89385a154ac50082416f0")
    text = render_chat(native_prompt("the Save button"), template=None, mode=Mode.DIRECT)
    assert text.startswith("<|im_start|>system<|im_sep|>You are Phi, a multimodal model")
    assert text.endswith("<|im_start|>user<|im_sep|><image>\n" + SENTENCE + "<|im_end|>\n"
                         "<|im_start|>assistant<|im_sep|>\n<|dummy_84|>")


def test_planner_and_grounder_prompts_share_system_turn_and_image() -> None:
    """Against the real template: both prompts are identical up to and including the image,
    which is what lets llama.cpp keep the image between the two calls."""
    planner = render_chat(agent_prompt("save the file", actions_reference="...",
                                       described=True), template=None, mode=Mode.REASONING)
    grounder = render_chat(native_prompt("the Save button"), template=None, mode=Mode.DIRECT)
    shared = "<|im_start|>user<|im_sep|><image>\n"
    head = planner[:planner.index(shared) + len(shared)]
    assert grounder.startswith(head)
    assert planner[len(head):] != grounder[len(head):]
    # The joint layout keeps the image last (after the instructions and the history).
    joint = agent_prompt("save the file", actions_reference="...", history=["a", "b"])
    assert joint.index("<image>") > joint.index("Steps taken so far")


@pytest.mark.parametrize(("answer", "box", "note"), [
    ("[0.174, 0.868, 0.224, 0.977]", (0.174, 0.868, 0.224, 0.977), ""),
    ("[0,0,1,1]", (0.0, 0.0, 1.0, 1.0), ""),
    (" [0.5, 0.5, 0.5, 0.5] ", (0.5, 0.5, 0.5, 0.5), ""),
    ("[0.3, 0.2, 0.1, 0.4]", (0.1, 0.2, 0.3, 0.4), "x1 > x2: swapped"),
    ("[0.1, 0.9, 0.3, 0.2]", (0.1, 0.2, 0.3, 0.9), "y1 > y2: swapped"),
])
def test_parse_box(answer: str, box: tuple[float, ...], note: str) -> None:
    assert parse_box(answer) == (box, note)


@pytest.mark.parametrize("answer", [
    "", "[0.1, 0.2, 0.3]", "[0.1, 0.2, 0.3, 0.4, 0.5]", "[1.5, 0, 0, 0]", "[-0.1, 0, 0, 0]",
    "(0.1, 0.2, 0.3, 0.4)", "[0.1, 0.2, 0.3, 0.4] and more", "[1e-1, 0, 0, 0]",
    '{"box": [0.1, 0.2, 0.3, 0.4]}', "[0.12345, 0, 0, 0]", "[__import__('os'), 0, 0, 0]",
    "[nan, 0, 0, 0]",
])
def test_parse_box_rejects(answer: str) -> None:
    with pytest.raises(BoxError):
        parse_box(answer)


def test_plan_parser_wants_words_not_boxes() -> None:
    plan = parse_plan('{"action": "drag", "target": "the file", "to_target": "the bin"}')
    assert plan.targets == ("the file", "the bin")
    action = plan.with_boxes(((0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.6, 0.6)))
    assert action.model_dump()["to_box"] == (0.5, 0.5, 0.6, 0.6)
    with pytest.raises(ActionError, match="name the target in words"):
        parse_plan('{"action": "click", "target": "x", "box": [0, 0, 1, 1]}')
    with pytest.raises(ActionError, match="needs 'target'"):
        parse_plan('{"action": "click", "target": " "}')
    with pytest.raises(ActionError, match="clicks"):
        parse_plan('{"action": "click", "target": "x", "clicks": 7}')
    assert parse_plan('{"action": "key", "keys": "ctrl+s"}').targets == ()


def test_planner_grammar_and_reference_have_no_boxes() -> None:
    grammar = action_grammar(described=True)
    assert '"\\"target\\":" ws click-target' in grammar and "click-box" not in grammar
    assert "drag-to-target" in grammar and "drag-to-box" not in grammar
    assert "[x1, y1, x2, y2]" not in describe_actions(described=True)


# ------------------------------------------------------------------ the loop

PLAN_CLICK = '{"action": "click", "target": "the OK button", "button": "left", "clicks": 1}'
DONE = '{"action": "done", "answer": "ok"}'


def _image(width: int = 800, height: int = 600):
    rgb = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return prepare(Frame(rgb, ScreenGeometry(0, 0, width, height), 0.0), max_patches=1024)


def _run(tmp_path: Path, planner: ScriptedRuntime, grounder: ScriptedRuntime | None,
         mode: Mode = Mode.REASONING):
    device = RecordingDevice()
    result = run_agent("press OK", runtime=planner, grounder=grounder,
                       screen=FakeScreen(np.zeros((600, 800, 3), np.uint8)), device=device,
                       record=RunDir(tmp_path), clock=FakeClock(),
                       settings=ModelSettings(mode=mode))
    return result, device


def test_loop_plans_then_grounds_with_a_second_runtime(tmp_path: Path) -> None:
    planner = ScriptedRuntime([PLAN_CLICK, DONE])
    grounder = ScriptedRuntime(["[0.4, 0.4, 0.6, 0.6]"])
    result, device = _run(tmp_path, planner, grounder)
    assert result.status is Status.DONE
    assert ("move", 400, 300) in device.calls  # the grounder's box, mapped to the screen
    first = planner.requests[0]
    assert first.mode is Mode.REASONING and first.prompt.startswith("<image>\n")
    assert "box" not in first.grammar.split("\nws ::=")[0]  # type: ignore[union-attr]
    (ground,) = grounder.requests
    assert ground.mode is Mode.DIRECT and ground.temperature == 0.0
    assert ground.prompt == native_prompt("the OK button")
    assert ground.image is first.image  # the same screenshot: the runtime can keep it
    step = result.steps[0]
    assert step.action is not None and step.action["box"] == (0.4, 0.4, 0.6, 0.6)
    assert step.grounding[0]["answer"] == "[0.4, 0.4, 0.6, 0.6]"
    assert step.grounding[0]["prompt"] == ground.prompt
    # One source of truth: the trajectory line holds both calls and reads back the same.
    line = (result.run_dir / "trajectory.jsonl").read_text().splitlines()[0]
    again = StepRecord.from_json(json.loads(line))
    assert again.grounding == step.grounding
    assert "locate 'the OK button' -> [0.4, 0.4, 0.6, 0.6]" in again.grounding_lines()[0]


def test_loop_same_runtime_grounds_by_default_and_replays(tmp_path: Path) -> None:
    runtime = ScriptedRuntime([PLAN_CLICK, "[0.6, 0.6, 0.4, 0.4]", DONE])  # reversed corners
    result, device = _run(tmp_path / "a", runtime, None, Mode.DIRECT)
    assert result.status is Status.DONE and ("move", 400, 300) in device.calls
    assert "swapped" in result.steps[0].grounding[0]["note"]
    replayed = ScriptedRuntime.from_jsonl(result.run_dir / "trajectory.jsonl")
    again, device2 = _run(tmp_path / "b", replayed, None, Mode.DIRECT)
    assert again.status is Status.DONE and device2.calls == device.calls


def test_unusable_box_goes_back_to_the_planner(tmp_path: Path) -> None:
    planner = ScriptedRuntime([PLAN_CLICK, DONE])
    grounder = ScriptedRuntime(["I think it is at the top"])
    result, device = _run(tmp_path, planner, grounder)
    assert result.status is Status.DONE and device.calls == []
    assert result.steps[0].outcome is Outcome.REJECTED
    assert "could not locate 'the OK button'" in (result.steps[0].error or "")
    assert "could not locate" in planner.requests[1].prompt  # told, next step
    assert result.steps[0].grounding[0]["box"] is None


def test_joint_grounder_keeps_the_old_json_click() -> None:
    grounder = Grounder(ScriptedRuntime([
        '{"action": "click", "target": "OK", "box": [0.1, 0.1, 0.2, 0.2]}']),
        GroundingPrompt.JOINT)
    found = grounder.locate("OK", _image())
    assert found.box == (0.1, 0.1, 0.2, 0.2) and '"action": "click"' in found.prompt


# ------------------------------------------------------------------ llama.cpp, tiny pair


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from deskpilot.models.llamacpp import LlamaCppRuntime
    from deskpilot.models.tiny import write_tiny_pair

    pair = write_tiny_pair(tmp_path_factory.mktemp("tiny"))
    rt = LlamaCppRuntime(pair.model, pair.mmproj, n_ctx=4096, n_gpu_layers=0)
    yield rt
    rt.close()


@pytest.mark.llama
def test_random_weights_at_temperature_1_always_give_a_box(tiny) -> None:
    image = _image(640, 368)
    for i in range(12):
        request = dataclasses.replace(native_request(f"element {i}", image), temperature=1.0)
        reply = tiny.complete(request)
        box, _note = parse_box(reply.answer)  # raises if the grammar let anything else out
        assert all(0.0 <= v <= 1.0 for v in box) and not reply.truncated


@pytest.mark.llama
def test_grounding_call_reuses_the_planners_evaluated_image(tiny) -> None:
    image = _image(640, 368)
    prompt = agent_prompt("press OK", actions_reference=describe_actions(described=True),
                          described=True)
    planner = tiny.complete(Request(prompt=prompt, image=image, mode=Mode.DIRECT,
                                    grammar=action_grammar(described=True),
                                    max_answer_tokens=64, temperature=0.8))
    assert planner.image_tokens > 0
    ground = tiny.complete(native_request("the OK button", image))
    assert ground.image_tokens == planner.image_tokens
    assert ground.reused_image_tokens == ground.image_tokens  # no image token evaluated again
    assert ground.reused_tokens > ground.image_tokens  # the system turn too
    assert "image_encode_s" not in ground.timings  # the vision encoder did not run
    # A different screenshot is never taken for the kept one.
    other = _image(640, 368)
    other.rgb.setflags(write=True)
    other.rgb[0, 0] ^= 0xFF
    fresh = tiny.complete(native_request("the OK button", other))
    assert fresh.reused_image_tokens == 0 and "image_encode_s" in fresh.timings


def test_json_schemas_for_servers_without_gbnf() -> None:
    from deskpilot.models.serving import json_schema_for

    planner = json_schema_for(action_grammar({"click", "drag"}, described=True))
    assert planner is not None
    click, drag = planner["anyOf"]
    assert "box" not in click["properties"] and click["required"] == ["action", "target"]
    assert drag["required"] == ["action", "target", "to_target"]
    assert json_schema_for(BOX_GRAMMAR) == {
        "type": "array", "minItems": 4, "maxItems": 4,
        "items": {"type": "number", "minimum": 0, "maximum": 1}}


def test_command_line_grounding_options() -> None:
    from deskpilot.agent.cli.errors import UserError
    from deskpilot.agent.cli.main import parse_run

    plain = parse_run(["run", "do it"])
    assert plain.settings.grounding is GroundingPrompt.NATIVE and plain.grounder is None
    joint = parse_run(["run", "do it", "--grounding", "joint"])
    assert joint.settings.grounding is GroundingPrompt.JOINT
    served = parse_run(["run", "do it", "--grounder-base-url", "http://127.0.0.1:9/v1",
                        "--grounder-model", "ui-grounder"])
    assert served.grounder is not None and served.grounder.backend == "openai"
    assert served.grounder.model == "ui-grounder"
    local = parse_run(["run", "do it", "--grounder-model", "tiny", "--n-ctx", "4096"])
    assert local.grounder is not None and local.grounder.is_tiny
    assert local.grounder.n_ctx == 4096
    with pytest.raises(UserError, match="--grounder-model NAME"):
        parse_run(["run", "do it", "--grounder-base-url", "http://127.0.0.1:9/v1"])
    with pytest.raises(UserError, match="need --grounding native"):
        parse_run(["run", "do it", "--grounding", "joint", "--grounder-model", "tiny"])
