"""A pytest test with the `desktop` fixture: its own private display, closed after the test.

    pytest examples/pytest -n 2 --deskpilot-report report
"""


def test_xcalc_adds(desktop):
    desktop.launch("xcalc", wait_for_window="Calculator")
    for key in ("4", "+", "5", "="):
        desktop.click(key)
    desktop.expect("9", region=(0, 0, 1280, 60))
