"""deskpilot from Python: add two numbers in xcalc on a private display, no model needed.

    python examples/python/calculator.py

Each call is one step, grounded by OCR (and cached beside this file), checked by the safety
gate and recorded; a failed step raises a typed error naming the step, its line and its
screenshot. The HTML report of the run lands in examples/python/report/.
"""

from pathlib import Path

from deskpilot import Desktop, write_report

HERE = Path(__file__).resolve().parent

with Desktop.headless(size=(1280, 800), name="calculator", cache="off") as d:
    d.launch("xcalc", wait_for_window="Calculator")
    d.click("7")
    # OCR reads xcalc's "." key as "+" too: a region says which "+" is meant.
    d.click("+", region=(185, 330, 220, 365))
    d.click("8")
    d.click("=")
    d.expect("15", region=(0, 0, 1280, 200))

report = HERE / "report"
write_report([d], report=report)
print(f"7 + 8 = 15 on {d.display}: {d.result.status.value if d.result else '?'}; "
      f"report in {report / 'index.html'}")
