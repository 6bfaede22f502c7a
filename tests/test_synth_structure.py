"""GeoSynth's modules read top-down: types → plan → render/objects → layouts → hr/ms → pipeline.

The import graph is read from the source with ``ast`` (imports inside functions count too, since
a lazy import that closes a circle is still a circle for a reader of the code).
"""

from __future__ import annotations

import ast
from pathlib import Path

from test_structure import strongly_connected

import geoassist.synth

SYNTH = Path(geoassist.synth.__file__).parent

# Each module's layer; a module may import only modules of its own layer or below.
LAYERS: dict[str, int] = {
    "palette": 0,
    "noise": 0,
    "types": 1,
    "plan": 2,
    "text": 2,
    "encode": 2,
    "render": 3,
    "objects": 3,
    "layouts": 4,
    "hr": 5,
    "ms": 5,
    "change": 6,
    "exporters": 6,
    "preview": 6,
    "pipeline": 7,
    "large": 8,
    "cli": 9,
    "__init__": 9,
}


def synth_imports(folder: Path = SYNTH) -> dict[str, dict[str, int]]:
    """``{module: {imported synth module: first line}}`` for every ``*.py`` in ``folder``."""
    modules = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.py")):
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1:
                    targets = [module.split(".")[0]] if module else [a.name for a in node.names]
                elif module.startswith("geoassist.synth."):
                    targets = [module.split(".")[2]]
                elif module == "geoassist.synth":
                    targets = [a.name for a in node.names if a.name in modules] or ["__init__"]
            elif isinstance(node, ast.Import):
                targets = [
                    a.name.split(".")[2]
                    for a in node.names
                    if a.name.startswith("geoassist.synth.")
                ]
            for target in targets:
                if target in modules and target != path.stem:
                    edges.setdefault(target, node.lineno)
        graph[path.stem] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module, each sorted."""
    return sorted(sorted(c) for c in strongly_connected(graph) if len(c) > 1)


def test_synth_has_no_import_cycle():
    assert import_cycles(synth_imports()) == []


def test_every_synth_module_has_a_layer():
    missing = sorted(set(synth_imports()) - set(LAYERS))
    assert not missing, (
        f"place {missing} in LAYERS of this test (where it sits among the synth layers)"
    )


def test_synth_modules_import_only_their_layer_or_below():
    upward = [
        f"{module}.py:{line} imports {target} (layer {LAYERS[target]} above {LAYERS[module]})"
        for module, edges in synth_imports().items()
        for target, line in edges.items()
        if LAYERS.get(target, 0) > LAYERS.get(module, 99)
    ]
    assert upward == []


def test_the_checker_finds_a_circle(tmp_path):
    """The checker itself can fail: a lazy import back into a lower layer is reported."""
    (tmp_path / "types.py").write_text("def f():\n    from geoassist.synth.ms import g\n")
    (tmp_path / "ms.py").write_text("from geoassist.synth.types import f\n")
    (tmp_path / "plan.py").write_text("from . import types\n")
    graph = synth_imports(tmp_path)
    assert graph == {"ms": {"types": 1}, "plan": {"types": 1}, "types": {"ms": 2}}
    assert import_cycles(graph) == [["ms", "types"]]
