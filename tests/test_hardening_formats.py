"""The answer grammar on hostile input: linear work, bounded memory, and no import cycle."""

from __future__ import annotations

import ast
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from geoassist import format_converters, format_grammar, format_masks, formats
from geoassist.format_converters import convert

PACKAGE = Path(formats.__file__).resolve().parent
GRAMMAR_MODULES = ("formats", "format_grammar", "format_masks", "format_converters")


def _seconds(run, text: str, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        run(text)
    return time.perf_counter() - start


def _doubling_ratio(make, run, n: int) -> float:
    small, large = make(n), make(2 * n)
    repeats = 1
    while _seconds(run, small, repeats) < 0.03 and repeats < 256:
        repeats *= 2
    single = double = float("inf")
    for _ in range(5):
        single = min(single, _seconds(run, small, repeats))
        double = min(double, _seconds(run, large, repeats))
    return double / single


def _assert_linear(make, run, n: int = 100_000) -> None:
    """Doubling the input may cost at most 2.5x (a quadratic step costs 4x).

    Each size is run often enough to be timed, five times, interleaved, and the fastest run
    counts. Other work on the machine can only make one measurement look worse, never make a
    quadratic step look linear, so a measurement that passes on a second or third try passes.
    """
    ratios = []
    for _ in range(3):
        ratios.append(_doubling_ratio(make, run, n))
        if ratios[-1] <= 2.5:
            return
    raise AssertionError(f"doubling the input cost {ratios} times as much")


HOSTILE_ANSWERS = {
    # the reported case: a quadratic `\s*none\s*\.?\s*` took 13 s at 80k characters
    "none then spaces": lambda n: "none" + " " * n + "x",
    "long score": lambda n: "<box>1,2,3,4:" + "1" * n + "x</box>",
    "long number": lambda n: "<box>" + "9" * n + ",1,2,3</box>",
    "unclosed tags": lambda n: "<box>1,2" * (n // 8),
    "mask runs past the row": lambda n: "<mask>2x2|" + "1," * (n // 2) + "</mask>",
    "mask rows past the grid": lambda n: "<mask>2x2|" + "0;" * (n // 2) + "</mask>",
    "spaces before a newline": lambda n: "a" + " " * n + "b\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_ANSWERS))
def test_parse_is_linear_in_the_answer(name):
    _assert_linear(HOSTILE_ANSWERS[name], lambda text: formats.parse(text, (640, 480)))


HOSTILE_FOREIGN = {
    "geochat angle spaces": ("geochat", lambda n: "{<1><2><3><4>|" + " " * n + "x"),
    "geochat after angle": ("geochat", lambda n: "{<1><2><3><4>|5" + " " * n + "x"),
    "qwen open box": ("qwen", lambda n: "<box>" + " " * n + "x"),
    "qwen corner spaces": ("qwen", lambda n: "<box>(1,2)" + " " * n + "x</box>"),
    "plain open fence": ("plain", lambda n: "```" + " " * n),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FOREIGN))
def test_converters_are_linear_in_the_answer(name):
    source, make = HOSTILE_FOREIGN[name]
    _assert_linear(make, lambda text: convert(text, (640, 480), source))


def test_a_mask_answer_costs_the_grid_not_the_image():
    # A 1x1 grid for a 40000 x 40000 image used to allocate the full 1.6 GB mask while parsing.
    tracemalloc.start()
    try:
        result = formats.parse("<ref>lake</ref><mask>1x1|1</mask>", (40_000, 40_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert result.errors == [] and result.mask_grid.tolist() == [[1]]
    assert result.mask_area_px == 40_000 * 40_000


def test_the_full_mask_is_built_on_demand_at_the_image_size_only():
    width, height = 1500, 1000
    result = formats.parse("<mask>2x512|1*512;0*512</mask>", (width, height))
    tracemalloc.start()
    try:
        mask = result.mask
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mask.shape == (height, width) and mask.dtype == bool
    # One byte per pixel, two index arrays and numpy's fixed indexing buffers; a grid finer
    # than the image adds nothing.
    assert peak <= width * height + 16 * (width + height) + 300_000, peak
    assert int(mask.sum()) == result.mask_area_px == width * (height // 2)
    assert result.mask is mask  # decoded once


def test_the_longest_mask_in_the_grammar_fits_the_length_limit():
    side = formats.MAX_MASK_SIDE
    checkerboard = (np.add.outer(np.arange(side), np.arange(side)) % 2).astype(bool)
    text = formats.format_mask(checkerboard, (side, side))
    assert len(text) < formats.MAX_ANSWER_CHARS
    result = formats.parse(text, (side, side))
    assert result.errors == []
    np.testing.assert_array_equal(result.mask_grid, checkerboard)


def test_text_past_the_length_limit_is_dropped_and_reported():
    limit = formats.MAX_ANSWER_CHARS
    result = formats.parse("<box>0,0,10,10</box>" + "x" * limit, (100, 100))
    assert len(result.boxes) == 1
    assert result.errors == [f"dropped 20 characters past the parser's limit of {limit}"]


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("geoassist.")}


def test_the_grammar_modules_import_each_other_without_a_cycle():
    graph = {
        m: {d.removeprefix("geoassist.") for d in _imports(m)} & set(GRAMMAR_MODULES)
        for m in GRAMMAR_MODULES
    }
    assert "formats" not in set().union(*(graph[m] for m in GRAMMAR_MODULES if m != "formats"))
    visiting: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import cycle through {module}: {graph}"
        visiting.add(module)
        for dep in graph[module]:
            visit(dep)
        visiting.discard(module)

    for module in GRAMMAR_MODULES:
        visit(module)


def test_the_public_path_keeps_every_name_and_formats_stays_small():
    for name in formats.__all__:
        assert getattr(formats, name) is not None
    assert formats.from_geochat is format_converters.from_geochat
    assert formats.Box is format_grammar.Box and formats.grid_to_mask is format_masks.grid_to_mask
    assert len((PACKAGE / "formats.py").read_text(encoding="utf-8").splitlines()) <= 600
