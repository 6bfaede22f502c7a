"""The errors a user can cause, all subclasses of :class:`GeoAssistError`.

Every message says what went wrong *and* what to do about it. Model output is
never a reason to raise: parsers report what they could not read instead.
"""

from __future__ import annotations


class GeoAssistError(Exception):
    """Base class of every error GeoAssist raises on purpose."""


class ConfigError(GeoAssistError, ValueError):
    """A configuration is invalid or names something unknown."""


class ModelNotFoundError(GeoAssistError, FileNotFoundError):
    """A model name, folder or hub id could not be resolved to weights."""


class CheckpointError(GeoAssistError):
    """A checkpoint folder is incomplete, corrupt or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need unpickling (``.bin``/``.pt``/``.ckpt``); only safetensors are read."""


class ImageError(GeoAssistError, ValueError):
    """An image could not be read or is not usable."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """An image path does not exist."""


class CorruptImageError(ImageError):
    """An image file exists but cannot be decoded."""


class UnsupportedImageError(ImageError):
    """An image has a format, dtype or layout GeoAssist does not read."""


class ImageTooLargeError(ImageError):
    """An image exceeds the pixel-count limit (decompression-bomb guard)."""


class BandMismatchError(ImageError):
    """An image's band count does not match what the model's preprocessing expects."""


class ChatRenderError(GeoAssistError, ValueError):
    """A conversation cannot be rendered into model input."""


class ImageSlotMismatchError(ChatRenderError):
    """The number of images differs from the number of ``<image>`` slots."""


class ContextTooLongError(ChatRenderError):
    """The rendered conversation does not fit the model's context window."""
