"""GeoAssist: a vision-language assistant for Earth-observation imagery."""

from __future__ import annotations

__version__ = "0.1.0"

from geoassist.errors import GeoAssistError

__all__ = ["GeoAssistError", "__version__", "Assistant", "Answer", "load_image", "Image"]


def __getattr__(name: str):
    # Heavy imports (torch, transformers) happen only when these are asked for,
    # so `import geoassist` stays cheap for the CLI and the data tools.
    if name in ("Assistant", "Answer"):
        from geoassist import assistant

        return getattr(assistant, name)
    if name in ("load_image", "Image"):
        from geoassist import io

        return getattr(io, name)
    raise AttributeError(f"module 'geoassist' has no attribute {name!r}")
