"""GeoAssist: a vision-language assistant for Earth-observation imagery."""

from __future__ import annotations

__version__ = "0.1.0"

from geoassist.errors import GeoAssistError

__all__ = [
    "GeoAssistError",
    "__version__",
    "Assistant",
    "Answer",
    "AskRequest",
    "CancelToken",
    "load_image",
    "Image",
]

_LAZY = {
    "Assistant": "geoassist.assistant",
    "Answer": "geoassist.answer",
    "AskRequest": "geoassist.request",
    "CancelToken": "geoassist.request",
    "load_image": "geoassist.io",
    "Image": "geoassist.io",
}


def __getattr__(name: str):
    # Heavy imports (torch, transformers) happen only when these are asked for,
    # so `import geoassist` stays cheap for the CLI and the data tools.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geoassist' has no attribute {name!r}")
