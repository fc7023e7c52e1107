"""ARCHITECTURE rule 1: imports point one way. Every `import dotagent…` in the package —
at module level or inside a function — is checked against the layer of the module it is in;
a module may import its own layer and the ones below, never one above."""

from __future__ import annotations

import ast
from pathlib import Path

import dotagent

PACKAGE = Path(dotagent.__file__).parent

# Lowest first. A unit is a top-level module or subpackage of `dotagent`.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "display", "paths", "fserrors", "private", "atomicfile",
     "filelock", "filehash", "boundedread", "timefmt", "localzone", "clock", "redaction",
     "_tomllines", "machineid", "daemonlog"},
    {"schedule"},
    {"manifest", "config", "discovery", "state", "audit", "power", "scaffold"},
    {"runner", "security", "notify", "plugins", "sandbox", "secrets", "alerts", "doctor",
     "posture", "posture_checks"},
    {"daemon", "api"},
    {"cli", "__main__"},
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"dotagent.{unit} is in no layer of tests/test_layers.py: place it")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(node.lineno, n) for n in names if n == "dotagent" or n.startswith("dotagent.")]
    return out


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    for unit in units:
        _level(unit)


def test_no_import_points_upward() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module_name(path)
        mine = _level(_unit(here))
        for line, target in _imports(path):
            theirs = _level(_unit(target))
            if theirs > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports "
                              f"{target} (layer {theirs} > {mine})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The walker itself: a function-level import is found, with its line.
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from dotagent.cli import app\n")
    assert _imports(sample) == [(2, "dotagent.cli")]
    assert _level(_unit("dotagent.cli.app")) > _level(_unit("dotagent.state.history"))
