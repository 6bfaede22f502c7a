"""Optional dependencies, grouped by who needs them, and the one way to import them.

The core install (``pip install geoassist``) answers questions from Python and the command
line. The extras add what only one kind of user needs:

=========  ====================================  ==========================================
extra      packages                              for
=========  ====================================  ==========================================
``app``    gradio                                ``geoassist serve``, :mod:`geoassist.app`
``train``  tensorboard, sentence-transformers    ``geoassist train`` (logs, stage-0 text tower)
``eval``   pycocoevalcap, matplotlib             caption metrics, report plots
``rag``    sentence-transformers, pypdf          knowledge stores (``--kb``, ``geoassist kb``)
``gpu``    faiss-gpu, bitsandbytes               GPU indexes, QLoRA
``dev``    all but ``gpu``, plus test tools      ``make test`` / ``make demo``
=========  ====================================  ==========================================

Modules that use an optional package import it through :func:`require`, inside the function
that needs it, so a missing extra costs one clear message, never an import-time traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from geoassist.errors import GeoAssistError

EXTRAS: dict[str, tuple[str, ...]] = {
    "app": ("gradio",),
    "train": ("tensorboard", "sentence-transformers"),
    "eval": ("pycocoevalcap", "matplotlib"),
    "rag": ("sentence-transformers", "pypdf"),
    "gpu": ("faiss-gpu", "bitsandbytes"),
}


class MissingExtraError(GeoAssistError, ImportError):
    """An optional package is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError` naming ``extra``.

    ``purpose`` says what needed it (``"geoassist serve"``, ``"reading PDF files"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0].replace("_", "-")
        if module.startswith("torch.utils.tensorboard"):
            package = "tensorboard"
        raise MissingExtraError(
            f"{purpose} needs {package}, which is not installed ({exc}); "
            f'install the extra: pip install "geoassist[{extra}]"'
        ) from exc
