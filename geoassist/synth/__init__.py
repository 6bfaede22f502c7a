"""GeoSynth: procedural Earth-observation scenes with exact ground truth.

``generate_scene(seed, kind="hr" | "ms", …)`` returns a :class:`Scene` (image and
:class:`SceneAnnotation`); ``generate_pair`` / ``generate_series`` return a
:class:`Pair`. The same seed always gives the same pixels and annotation.
Nothing here imports torch.
"""

from __future__ import annotations

from geoassist.synth.types import (
    QA,
    Change,
    FormatKindError,
    OrientedBox,
    Pair,
    PairAnnotation,
    ReferringExpression,
    RegionCaption,
    Relation,
    Scene,
    SceneAnnotation,
    SynthError,
    SynthObject,
)


def generate_scene(seed: int, kind: str = "hr", scene_class: str | None = None, size: int = 512, gsd_m: float | None = None, nir: bool = False, with_text: bool = True) -> Scene:
    """One scene: ``kind="hr"`` (aerial RGB, optional NIR, 0.3–1 m) or ``"ms"`` (13-band Sentinel-2-like, 10 m)."""
    if kind == "hr":
        from geoassist.synth.hr import generate_hr

        return generate_hr(seed, scene_class, size, gsd_m=gsd_m, nir=nir, with_text=with_text)[0]
    if kind == "ms":
        from geoassist.synth.ms import generate_ms

        return generate_ms(seed, scene_class, size, with_text=with_text)[0]
    raise SynthError(f"unknown scene kind {kind!r}; use 'hr' or 'ms' (pairs: generate_pair)")


def generate_pair(seed: int, scene_class: str | None = None, size: int = 256, **kw) -> Pair:
    """A before/after pair of one place with real changes and nuisance differences."""
    from geoassist.synth.change import generate_pair as _gp

    return _gp(seed, scene_class, size, **kw)


def generate_series(seed: int, n_dates: int = 4, scene_class: str | None = None, size: int = 256, **kw) -> Pair:
    """``n_dates`` images of one place; changes happen between consecutive dates."""
    from geoassist.synth.change import generate_series as _gs

    return _gs(seed, n_dates, scene_class, size, **kw)


def scene_classes(kind: str = "hr") -> list[str]:
    """The scene classes of a kind."""
    if kind == "ms":
        from geoassist.synth.ms import MS_CLASSES

        return list(MS_CLASSES)
    from geoassist.synth.layouts import SCENE_CLASSES

    return sorted(SCENE_CLASSES)


__all__ = [
    "generate_scene",
    "generate_pair",
    "generate_series",
    "scene_classes",
    "Scene",
    "SceneAnnotation",
    "SynthObject",
    "OrientedBox",
    "Relation",
    "QA",
    "ReferringExpression",
    "RegionCaption",
    "Pair",
    "PairAnnotation",
    "Change",
    "SynthError",
    "FormatKindError",
]
