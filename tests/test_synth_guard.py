"""Guard against triviality: scene classes must not be separable by colour alone."""

from __future__ import annotations

import numpy as np
import pytest

from geoassist.synth import generate_scene, scene_classes

PER_CLASS = 24


def colour_histogram(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    """Joint RGB histogram (bins³), normalised: the classic colour-only baseline."""
    q = (rgb[..., :3].astype(np.int32) * bins) // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
    return h / h.sum()


def colour_histogram_accuracy(per_class: int = PER_CLASS, size: int = 128, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = scene_classes("hr")
    X, y = [], []
    for ci, c in enumerate(classes):
        for k in range(per_class):
            s = generate_scene(seed + 1000 * ci + k, "hr", c, size=size, with_text=False)
            X.append(np.sqrt(colour_histogram(s.image)))
            y.append(ci)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    return float(cross_val_score(clf, np.array(X), np.array(y), cv=4).mean())


def test_colour_histogram_logistic_regression_stays_below_60_percent():
    acc = colour_histogram_accuracy()
    print(f"colour-histogram logistic regression accuracy: {acc:.3f} over {len(scene_classes('hr'))} classes")
    assert acc <= 0.60, f"scene classes are separable by colour alone ({acc:.2f}); add colour variety or shared land cover"


@pytest.mark.slow
def test_colour_histogram_guard_at_full_size():
    assert colour_histogram_accuracy(per_class=60, size=256, seed=77) <= 0.60
