"""Screens, coordinate spaces and model images: from a screenshot to a click and back."""

from deskpilot.grounding.capture import (
    CaptureError,
    FakeScreen,
    Frame,
    MssScreen,
    Screen,
    bgra_to_rgb,
    list_monitors,
)
from deskpilot.grounding.geometry import (
    Point,
    Region,
    ScreenGeometry,
    View,
    box_center,
    box_to_screen,
    crop_view,
    norm_to_screen,
    screen_to_norm,
)
from deskpilot.grounding.preprocess import (
    DEFAULT_MAX_PATCHES,
    DEFAULT_MIN_PATCHES,
    DEFAULT_PATCH,
    ModelImage,
    fit_to_patches,
    prepare,
)

__all__ = [
    "DEFAULT_MAX_PATCHES",
    "DEFAULT_MIN_PATCHES",
    "DEFAULT_PATCH",
    "CaptureError",
    "FakeScreen",
    "Frame",
    "ModelImage",
    "MssScreen",
    "Point",
    "Region",
    "Screen",
    "ScreenGeometry",
    "View",
    "bgra_to_rgb",
    "box_center",
    "box_to_screen",
    "crop_view",
    "fit_to_patches",
    "list_monitors",
    "norm_to_screen",
    "prepare",
    "screen_to_norm",
]
