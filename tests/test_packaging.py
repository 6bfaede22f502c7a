"""Packaging: the entry-point folders install as geoassist.* in editable and regular installs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {
    "geoassist.train": "train",
    "geoassist.eval": "eval",
    "geoassist.data_recipes": "data_recipes",
    "geoassist.app": "app",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    setuptools_cfg = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools_cfg["packages"])
    package_dir = setuptools_cfg["package-dir"]
    assert {k: package_dir[k] for k in MAPPED} == MAPPED
    found = set()
    for top, folder in [("geoassist", "geoassist"), *MAPPED.items()]:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([top, *rel.parts]))
    assert found <= listed, (
        f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    )


def test_entry_point_packages_import_in_this_install():
    import importlib

    for module, folder in MAPPED.items():
        assert Path(importlib.import_module(module).__file__).parent == ROOT / folder


def test_regular_install_ships_mapped_packages_and_no_generic_top_level(tmp_path):
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(tmp_path),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
            timeout=240,
        )
    except subprocess.CalledProcessError as exc:  # pragma: no cover - shows pip's reason
        pytest.fail(exc.stderr.decode()[-2000:])
    wheel = next(tmp_path.glob("geoassist-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"geoassist"}, tops
    for module in MAPPED:
        assert f"{module.replace('.', '/')}/__init__.py" in names
    assert "geoassist/model_configs/tiny.json" in names
    assert (
        "geoassist/train/configs/mini-stage2.yaml" in names
        and "geoassist/train/accelerate/ddp.yaml" in names
    )
    # Unpack it alone (no dependencies needed for these modules) and import from there.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = "import geoassist.train, geoassist.eval, geoassist.data_recipes, geoassist.app, geoassist; print(geoassist.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))
