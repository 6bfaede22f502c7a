"""Extras match users: the core answers questions; the app, trainer, scorer and knowledge store name their extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from geoassist.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
# What only the app, the trainer, the caption scorer/report and the knowledge store import.
OPTIONAL = (
    "gradio",
    "tensorboard",
    "pycocoevalcap",
    "matplotlib",
    "sentence_transformers",
    "pypdf",
)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_extras_are_the_documented_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not core & {m.replace("_", "-") for m in OPTIONAL}, (
        "an extra-only package is a core dependency"
    )
    for extra, packages in EXTRAS.items():
        assert {_name(r) for r in extras[extra]} == set(packages), extra
    # `make setup` installs `.[dev]`: it must pull every extra but gpu
    (self_ref,) = [r for r in extras["dev"] if r.startswith("geoassist[")]
    assert set(self_ref[len("geoassist[") : -1].split(",")) == set(EXTRAS) - {"gpu"}
    assert 'pip install -c constraints.txt -e ".[dev]"' in (ROOT / "Makefile").read_text()


_BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {{name!r}} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Blocker())
    # As if not installed: `import x` fails and `importlib.util.find_spec(x)` (how accelerate and
    # transformers probe for optional packages) answers None instead of reaching the blocker.
    for name in BLOCKED:
        sys.modules[name] = None
    import numpy as np
    import torch
    from PIL import Image

    import geoassist
    from geoassist.config import load_preset
    from geoassist.extras import MissingExtraError
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    out = {{}}
    config = load_preset("tiny")
    torch.manual_seed(0)
    assistant = geoassist.Assistant(GeoAssistModel(config, load_tokenizer(config.lm)).eval())
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(sys.argv[1] + "/img.png")
    answer = assistant.ask(sys.argv[1] + "/img.png", "What is here?", max_new_tokens=4)
    out["answer"] = type(answer).__name__
    from geoassist.cli import main

    out["serve"] = main(["serve"])
    out["train"] = main(["train", "--preset", "tiny-smoke", "--out", sys.argv[1] + "/run"])
    for name, call in (
        ("app", lambda: __import__("geoassist.app.ui")),
        ("rag", lambda: __import__("geoassist.rag.embedders", fromlist=["x"]).SentenceTransformerEmbedder()),
        ("train_tower", lambda: __import__("geoassist.train.stages", fromlist=["x"]).FrozenSentenceEncoder("minilm")),
    ):
        try:
            call()
            out[name] = "imported"
        except MissingExtraError as exc:
            out[name] = str(exc)
    out["loaded"] = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED)
    print("RESULT " + json.dumps(out))
    """
)


def test_core_install_answers_and_extras_are_named(tmp_path):
    """Without any extra's package importable, the Python API answers; app, trainer and store say what to install."""
    script = tmp_path / "run.py"
    script.write_text(_BLOCKED_RUN.format(blocked=OPTIONAL))
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["answer"] == "Answer" and out["loaded"] == []
    assert out["serve"] == 1 and out["train"] == 1
    assert (
        'pip install "geoassist[app]"' in run.stderr
        and "geoassist serve needs gradio" in run.stderr
    )
    assert 'pip install "geoassist[train]"' in run.stderr and "tensorboard" in run.stderr
    assert "Traceback" not in run.stderr
    assert 'pip install "geoassist[app]"' in out["app"]
    assert 'pip install "geoassist[rag]"' in out["rag"] and "sentence-transformers" in out["rag"]
    assert 'pip install "geoassist[train]"' in out["train_tower"]
    assert not (tmp_path / "run").exists()  # refused before any work started
