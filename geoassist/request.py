"""One request, as every face builds it: the Python API, the CLI, ``geoassist batch`` and the app.

An :class:`AskRequest` carries everything one question needs — images, prompt,
task, region, history, how bands become the encoder's input
(:class:`ImageOptions`), how tokens are chosen (the model's
:class:`~geoassist.model.vlm.SamplingConfig`, a seed, a token budget), whether to
stream, how large scenes are tiled (:class:`TilingOptions`, None: never), a
:class:`CancelToken` and a progress callback. :meth:`AskRequest.build` turns the
keyword arguments of :meth:`Assistant.ask <geoassist.assistant.Assistant.ask>`
into one; :meth:`Assistant.answer <geoassist.assistant.Assistant.answer>` answers it.
Generation checks the cancel token between tokens (a cancelled answer is what was
generated so far, with ``Answer.stopped``), and the large-scene planner between
tiles, calling ``progress(tiles_done, tiles_total)`` as it goes.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geoassist.errors import GeoAssistError

if TYPE_CHECKING:
    from geoassist.model.vlm import SamplingConfig

__all__ = [
    "DEFAULT_MAX_TILES",
    "AskRequest",
    "CancelToken",
    "ImageOptions",
    "TilingOptions",
]

DEFAULT_MAX_TILES = 64
OVERVIEW_MAX_SIDE = 1024
DEFAULT_MAX_NEW_TOKENS = 256


class CancelToken:
    """Set once by :meth:`cancel` (from any thread); read through :attr:`cancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


@dataclass(frozen=True)
class ImageOptions:
    """How an image's bands become the encoder's input.

    ``bands`` names (or 1-based indices of) the bands of an RGB composite; ``sensor``
    is a :mod:`geoassist.sensors` preset and ``composite`` one of its composites or
    indices (``true_color``, ``false_color``, ``ndvi``…).
    """

    bands: tuple[str | int, ...] | str | int | None = None
    sensor: str | None = None
    composite: str | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            one = isinstance(self.bands, (str, int))
            object.__setattr__(self, "bands", (self.bands,) if one else tuple(self.bands))


@dataclass
class TilingOptions:
    """How large scenes are tiled.

    ``max_tiles`` bounds the tiles read per question (0: never tile, answer from a
    downscaled overview read by window). A request with ``tiling=None`` turns the
    large-scene path off altogether: the image is loaded whole and resized, as small
    ones are. ``tile_px`` overrides the tile size in source pixels (default: the
    encoder's input at ``PreprocessConfig.gsd_m``, or 1:1 when the model's or the
    raster's GSD is unknown); ``overlap`` is a fraction of it. Images up to
    ``min_side_px`` (and up to twice a tile) are not tiled. ``relevance_weight`` is the
    share of the question's text relevance (against image detail) in choosing tiles;
    ``summarise`` lets the LM merge captions.
    """

    max_tiles: int = DEFAULT_MAX_TILES
    tile_px: int | None = None
    overlap: float = 0.125
    min_side_px: int = 512
    batch_size: int = 8
    summarise: bool = True
    relevance_weight: float = 0.5
    overview_max_side: int = OVERVIEW_MAX_SIDE

    def __post_init__(self) -> None:
        if self.max_tiles < 0:
            raise GeoAssistError(f"max_tiles must be >= 0, got {self.max_tiles}")
        if not 0 <= self.overlap < 0.5:
            raise GeoAssistError(f"tile overlap must be in [0, 0.5), got {self.overlap}")
        if self.tile_px is not None and self.tile_px < 8:
            raise GeoAssistError(f"tile_px must be at least 8, got {self.tile_px}")
        if self.batch_size < 1:
            raise GeoAssistError(f"the tile batch size must be at least 1, got {self.batch_size}")

    @classmethod
    def of(cls, tiling: Any, max_tiles: int | None = None) -> TilingOptions | None:
        """From ``ask``'s ``tiling`` (None: defaults, False: None, a dict or TilingOptions) and ``max_tiles``."""
        if tiling is False:
            return None
        if tiling is None or tiling is True:
            options = cls()
        elif isinstance(tiling, TilingOptions):
            options = dataclasses.replace(tiling)
        elif isinstance(tiling, dict):
            try:
                options = cls(**tiling)
            except TypeError as exc:
                names = ", ".join(f.name for f in dataclasses.fields(cls))
                raise GeoAssistError(
                    f"unknown tiling option in {tiling}; options: {names}"
                ) from exc
        else:
            raise GeoAssistError(
                f"tiling must be TilingOptions, a dict or False, got {type(tiling).__name__}"
            )
        if max_tiles is not None:
            options = dataclasses.replace(options, max_tiles=int(max_tiles))
        return options


def _greedy() -> SamplingConfig:
    from geoassist.model.vlm import SamplingConfig

    return SamplingConfig()


@dataclass
class AskRequest:
    """One question about zero or more images (see the module docstring).

    ``images`` holds paths, URLs, band folders, PIL images, arrays, bytes or
    :class:`~geoassist.io.Image` objects (several for a pair or series; the answer's
    geometry is in pixels of the last). ``region`` is a pixel box for the region task;
    ``history`` continues a conversation (``answer.history``).
    """

    images: list[Any] = field(default_factory=list)
    prompt: str = ""
    task: str | None = None
    region: tuple[float, float, float, float] | None = None
    history: list[dict[str, str]] | None = None
    image_options: ImageOptions = field(default_factory=ImageOptions)
    sampling: SamplingConfig = field(default_factory=_greedy)
    seed: int | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stream: bool = False
    tiling: TilingOptions | None = field(default_factory=TilingOptions)
    cancel: CancelToken | None = None
    progress: Callable[[int, int], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from geoassist.prompts import TASKS

        if self.images is None:
            self.images = []
        elif not isinstance(self.images, list):
            self.images = list(self.images)
        if not isinstance(self.prompt, str):
            raise GeoAssistError(f"the prompt must be text, got {type(self.prompt).__name__}")
        if self.task is not None and self.task not in TASKS:
            raise GeoAssistError(f"unknown task {self.task!r}; tasks: {', '.join(TASKS)}")
        if self.region is not None:
            try:
                region = tuple(float(v) for v in self.region)
            except (TypeError, ValueError) as exc:
                raise GeoAssistError(
                    f"a region is four pixel numbers x1, y1, x2, y2, got {self.region!r}"
                ) from exc
            if len(region) != 4:
                raise GeoAssistError(
                    f"a region is four pixel numbers x1, y1, x2, y2, got {len(region)}"
                )
            self.region = region  # type: ignore[assignment]
        if int(self.max_new_tokens) < 1:
            raise GeoAssistError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.history is not None:
            self.history = [dict(m) for m in self.history]

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def replace(self, **changes: Any) -> AskRequest:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(
        cls,
        image: Any = None,
        prompt: str = "",
        *,
        images: Sequence[Any] | None = None,
        task: str | None = None,
        history: list[dict[str, str]] | None = None,
        region: Sequence[float] | None = None,
        bands: Sequence[str | int] | None = None,
        sensor: str | None = None,
        composite: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        stream: bool = False,
        max_tiles: int | None = None,
        tiling: Any = None,
        cancel: CancelToken | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> AskRequest:
        """A request from :meth:`Assistant.ask <geoassist.assistant.Assistant.ask>`'s keyword arguments.

        ``image`` is one image or a list (a pair or series); ``images`` adds more.
        ``tiling=False`` turns the large-scene path off; ``tiling`` may also be a
        :class:`TilingOptions` or a dict of its fields, and ``max_tiles`` overrides its budget.
        """
        from geoassist.model.vlm import SamplingConfig

        items: list[Any] = []
        if isinstance(image, (list, tuple)):
            items.extend(image)
        elif image is not None:
            items.append(image)
        items.extend(images or [])
        return cls(
            images=items,
            prompt=prompt,
            task=task,
            region=tuple(region) if region is not None else None,
            history=history,
            image_options=ImageOptions(bands, sensor, composite),
            sampling=SamplingConfig(do_sample=do_sample, temperature=temperature, top_p=top_p),
            seed=seed,
            max_new_tokens=max_new_tokens,
            stream=stream,
            tiling=TilingOptions.of(tiling, max_tiles),
            cancel=cancel,
            progress=progress,
        )
