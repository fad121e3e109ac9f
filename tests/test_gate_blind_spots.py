"""The safety gate's blind spots found by the attack run (issue 14, classes 1-6), pure.

Each class has cases of its own here; the real-xterm cases are in tests/test_gate_x11.py.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from deskpilot.actions.approval import DenyAll
from deskpilot.actions.categories import Category
from deskpilot.actions.gate import Gate
from deskpilot.actions.labels import LANGUAGES, affirmative, consequential, elements, words
from deskpilot.actions.policy import Policy, key_text, shows_prompt
from deskpilot.actions.resolved import Resolved
from deskpilot.actions.types import AnyAction, Click, Hold, Key, Type
from deskpilot.actions.validate import validate
from deskpilot.grounding.capture import Frame
from deskpilot.grounding.geometry import PixelBox, ScreenGeometry, View
from deskpilot.grounding.ocr import FakeReader, TextBox, TextLine
from deskpilot.grounding.windows import FakeWindowProbe, WindowInfo

W, H = 1280, 800
SCREEN = ScreenGeometry(0, 0, W, H)
VIEW = View.full(SCREEN, W, H)
XTERM = WindowInfo(0x100, "user@box: ~", ("xterm", "XTerm"))
XEDIT = WindowInfo(0x200, "notes.txt", ("xedit", "Xedit"))
IDE = WindowInfo(0x300, "main.py - project", ("code", "Code"), box=(0, 0, 1280, 800))
KEY = "ghp_" + "Zq8Lm2Xv5Rt9Wn3Kp7Bc4Hd6Jf1Gs0Ya2Ue"  # built at run time: no scanner trips


def resolve(action: AnyAction) -> Resolved:
    return validate(action, VIEW)


def key(keys: str) -> Resolved:
    return resolve(Key(action="key", keys=keys))


def typing(text: str) -> Resolved:
    return resolve(Type(action="type", text=text))


def click(x: int, y: int) -> Resolved:
    nx, ny = (x + 0.5) / W, (y + 0.5) / H
    return resolve(Click(action="click", box=(nx, ny, nx, ny)))


def frame() -> Frame:
    return Frame(np.zeros((H, W, 3), np.uint8), SCREEN, 0.0)


def cats(policy: Policy, resolved: Resolved, f: Frame | None = None) -> list[Category]:
    return [c.category for c in policy.review(resolved, f).approvals]


class Log:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def incident(self, data: dict[str, object]) -> None:
        self.rows.append(data)


# --- 1. A command spelled key by key --------------------------------------------------------


@pytest.mark.parametrize("chord", ["r", "m", "space", "shift+r", "slash", "minus", "0", "-",
                                   "shift+7", "."])
def test_a_key_that_types_text_into_a_terminal_is_terminal_typing(chord: str) -> None:
    resolved = key(chord)
    assert key_text(resolved), "the key produces text"
    assert cats(Policy(windows=FakeWindowProbe(focus=XTERM)), resolved) == \
        [Category.TERMINAL_TYPING]
    assert Policy(windows=FakeWindowProbe(focus=XEDIT)).review(resolved, None).ok


@pytest.mark.parametrize("window", [XTERM, WindowInfo(5, "", ("krunner", "krunner")),
                                    WindowInfo(6, "Run Application", ("", ""))])
def test_spelling_rm_then_enter_is_stopped_at_the_first_key(window: WindowInfo) -> None:
    gate = Gate(Policy(windows=FakeWindowProbe(focus=window)), DenyAll(), Log())
    for chord in ("r", "m", "space", "enter"):
        blocked = gate.check(key(chord), None)
        assert blocked is not None and blocked.category is Category.TERMINAL_TYPING, chord


def test_hold_shift_and_letters_is_typing_too() -> None:
    resolved = resolve(Hold(action="hold", hold="shift", keys="l"))
    assert key_text(resolved) == "L"
    assert cats(Policy(windows=FakeWindowProbe(focus=XTERM)), resolved) == \
        [Category.TERMINAL_TYPING]


@pytest.mark.parametrize("chord", ["ctrl+a", "alt+b", "up", "tab", "esc", "f5"])
def test_chords_that_type_nothing(chord: str) -> None:
    assert key_text(key(chord)) == ""


# --- 2. Paste and run chords with extra modifiers -------------------------------------------


@pytest.mark.parametrize("chord", ["alt+shift+insert", "ctrl+shift+insert", "ctrl+alt+shift+v",
                                   "shift+win+insert", "ctrl+v", "alt+ctrl+v", "shift+enter",
                                   "ctrl+alt+j", "ctrl+shift+m"])
def test_paste_and_run_chords_match_with_extra_modifiers(chord: str) -> None:
    assert Category.TERMINAL_TYPING in cats(Policy(windows=FakeWindowProbe(focus=XTERM)),
                                            key(chord))


# --- 3. Destructive buttons not seen --------------------------------------------------------


def line(text: str, box: PixelBox, words_: tuple[tuple[str, PixelBox], ...] = ()) -> TextLine:
    return TextLine(text, box, 0.9, tuple(TextBox(t, b, 0.9) for t, b in words_))


def test_the_word_lists_cover_eight_languages_in_one_data_file() -> None:
    raw = json.loads((resources.files("deskpilot.actions") / "data" / "labels.json")
                     .read_text(encoding="utf-8"))
    for name in ("consequential", "affirmative"):
        assert set(LANGUAGES) <= set(raw[name]), name
        assert all(raw[name][lang] for lang in LANGUAGES), name


@pytest.mark.parametrize("label", ["Löschen", "LOSCHEN", "Supprimer", "Senden", "Eliminar",
                                   "Excluir", "Elimina", "删除", "削除する", "送信", "Purge",
                                   "Destroy", "Overwrite", "Post", "De1ete", "C0nfirm payment",
                                   "Endgültig löschen", "Cerrar sesión", "Vider la corbeille",
                                   "ゴミ箱を空にする", "确认付款"])
def test_consequential_labels_in_other_languages_synonyms_and_misreads(label: str) -> None:
    assert consequential(label), label
    policy = Policy(reader=FakeReader([line(label, (600, 400, 700, 420))]))
    assert cats(policy, click(650, 410), frame()) == [Category.SENSITIVE_CLICKS]


@pytest.mark.parametrize("label", ["Cancel", "Abbrechen", "Annuler", "Cancelar", "Annulla",
                                   "取消", "キャンセル", "Sender", "Deleted items", "Postal code",
                                   "Runway", "Save", "Open"])
def test_everyday_labels_in_other_languages_pass(label: str) -> None:
    assert consequential(label) is None, label


@pytest.mark.parametrize("label", ["OK", "0K", "YeS", "Ja", "Oui", "Sí", "Sim", "Sì", "确定",
                                   "はい", "Okay!"])
def test_affirmatives_in_other_languages(label: str) -> None:
    assert affirmative(label)


MERGED = [
    # (the merged line as OCR read it, word boxes or none, where the click lands)
    ("OK) Cance1", (), 612),
    ("YeS No", (), 605),
    ("OK Cancel", (("OK", (600, 400, 625, 420)), ("Cancel", (660, 400, 720, 420))), 612),
    ("Ja Nein", (("Ja", (600, 400, 620, 420)), ("Nein", (650, 400, 690, 420))), 610),
]


@pytest.mark.parametrize(("text", "boxes", "x"), MERGED)
def test_an_affirmative_read_merged_with_its_neighbour_takes_the_dialog_meaning(
        text: str, boxes: tuple[tuple[str, PixelBox], ...], x: int) -> None:
    dialog = line("Delete all 12 messages?", (560, 330, 800, 350))
    buttons = line(text, (600, 400, 720, 420), boxes)
    review = Policy(reader=FakeReader([dialog, buttons])).review(click(x, 410), frame())
    assert [c.category for c in review.approvals] == [Category.SENSITIVE_CLICKS]
    harmless = line("The backup finished.", (560, 330, 800, 350))
    assert Policy(reader=FakeReader([harmless, buttons])).review(click(x, 410), frame()).ok


def test_word_geometry_splits_buttons_and_judges_the_one_under_the_point() -> None:
    merged = line("Cancel Delete", (500, 400, 700, 420),
                  (("Cancel", (500, 400, 560, 420)), ("Delete", (640, 400, 700, 420))))
    assert [e.text for e in elements(merged)] == ["Cancel", "Delete"]
    policy = Policy(reader=FakeReader([merged]))
    assert cats(policy, click(670, 410), frame()) == [Category.SENSITIVE_CLICKS]
    assert policy.review(click(530, 410), frame()).ok
    # a label of two words close together stays one element
    pay = line("Confirm payment", (500, 400, 700, 420),
               (("Confirm", (500, 400, 580, 420)), ("payment", (588, 400, 700, 420))))
    assert [e.text for e in elements(pay)] == ["Confirm payment"]


def test_folding_keeps_word_boundaries() -> None:
    assert words("  Löschen!  OK) ") == "loschen ok"
    assert consequential("Sendeprotokoll") is None


# --- 4. Window-closing chords ----------------------------------------------------------------


@pytest.mark.parametrize("chord", ["ctrl+w", "ctrl+shift+w", "ctrl+f4", "alt+space",
                                   "ctrl+shift+esc", "ctrl+alt+w"])
def test_window_closing_chords_are_sensitive(chord: str) -> None:
    assert cats(Policy(), key(chord)) == [Category.SENSITIVE_KEYS]


# --- 5. Terminals by other names -------------------------------------------------------------


@pytest.mark.parametrize("text", ["dev@buildbox:~/src$", "root@host:/etc#", "$ ls -la",
                                  "~/project $", ">>>", "%", "PS C:\\Users\\me>",
                                  "alice@laptop ~ %"])
def test_shell_prompts_are_recognised(text: str) -> None:
    assert shows_prompt(text)


@pytest.mark.parametrize("text", ["Progress 50%", "Total: $40", "john@example.com - Inbox",
                                  "# Heading", "> quoted reply text", "Price in $ or EUR"])
def test_ordinary_lines_are_not_prompts(text: str) -> None:
    assert not shows_prompt(text)


def test_an_unknown_window_showing_a_prompt_is_a_terminal() -> None:
    terminal_pane = FakeReader([line("def main():", (40, 40, 200, 60)),
                                line("dev@buildbox:~/src$", (40, 700, 260, 720))])
    policy = Policy(windows=FakeWindowProbe(focus=IDE), reader=terminal_pane)
    review = policy.review(typing("rm -rf build"), frame())
    assert [c.category for c in review.approvals] == [Category.TERMINAL_TYPING]
    assert "shell prompt" in review.approvals[0].reason
    assert terminal_pane.calls[0] == (0, 0, 1280, 800), "the focused window's box is read"
    assert cats(policy, key("enter"), frame()) == [Category.TERMINAL_TYPING]
    editor_only = FakeReader([line("def main():", (40, 40, 200, 60))])
    assert Policy(windows=FakeWindowProbe(focus=IDE), reader=editor_only) \
        .review(typing("x = 1"), frame()).ok


# --- 6. A secret typed in pieces -------------------------------------------------------------


def test_a_key_typed_in_three_chunks_is_caught_when_the_pieces_join() -> None:
    gate = Gate(Policy(windows=FakeWindowProbe(focus=XEDIT)), DenyAll(), Log())
    assert gate.check(typing(KEY), None) is not None, "whole, it is denied"
    thirds = [KEY[:13], KEY[13:26], KEY[26:]]
    results = [gate.check(typing(part), None) for part in thirds]
    assert results[0] is None
    blocked = [r for r in results if r is not None]
    assert blocked and blocked[0].category is Category.SECRET_TYPING
    assert "in pieces" in blocked[0].reason
    assert KEY not in blocked[0].reason


def test_a_key_typed_key_by_key_is_caught_before_it_completes() -> None:
    gate = Gate(Policy(windows=FakeWindowProbe(focus=XEDIT)), DenyAll(), Log())
    verdicts = [gate.check(key(ch), None) for ch in KEY]
    assert any(v is not None and v.category is Category.SECRET_TYPING for v in verdicts)
    assert verdicts[-1] is not None, "the last key never completes the secret"


def test_pieces_typed_into_different_windows_do_not_join() -> None:
    probe = FakeWindowProbe(focus=XEDIT)
    gate = Gate(Policy(windows=probe), DenyAll(), Log())
    assert gate.check(typing(KEY[:18]), None) is None
    probe.focus = WindowInfo(0x999, "other", ("other", "Other"))
    assert gate.check(typing(KEY[18:36]), None) is None


def test_a_secret_the_task_supplied_may_be_typed_in_pieces() -> None:
    policy = Policy(windows=FakeWindowProbe(focus=XEDIT), task_text=[KEY])
    gate = Gate(policy, DenyAll(), Log())
    assert all(gate.check(typing(p), None) is None for p in (KEY[:13], KEY[13:26], KEY[26:]))
