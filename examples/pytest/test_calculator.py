"""A pytest test with the `desktop` fixture: its own private display, closed after the test.

    pytest examples/pytest -n 2 --deskpilot-report report
"""


def test_xcalc_adds(desktop):
    desktop.launch("xcalc", wait_for_window="Calculator")
    desktop.click("4")
    desktop.click("+", region=(185, 330, 220, 365))  # OCR reads the "." key as "+" too
    desktop.click("5")
    desktop.click("=")
    desktop.expect("9", region=(0, 0, 1280, 60))
