"""``deskpilot`` itself only re-exports, lazily, and says the same to type checkers."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import deskpilot

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_to_its_definition() -> None:
    for name in deskpilot.__all__:
        value = getattr(deskpilot, name)
        if name != "__version__":
            assert value.__module__ == deskpilot._EXPORTS[name], name


def test_the_type_checkers_block_names_the_same_modules() -> None:
    tree = ast.parse((ROOT / "deskpilot" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If)
                 and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            assert alias.asname == alias.name, "re-exports use `import X as X`"
            seen[alias.name] = node.module
    assert seen == deskpilot._EXPORTS


def test_the_version_is_the_distributions() -> None:
    assert deskpilot.__version__ == importlib.metadata.version("deskpilot")


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = ("import sys, deskpilot; "
            "print(sorted(m for m in sys.modules if m.startswith(('deskpilot.', 'numpy'))))")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
