"""The LM's keys and values of one conversation, kept between requests (see :class:`PrefixCache`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from geoassist.model.vlm import GeoAssistModel


class PrefixCache:
    """The keys and values of one conversation, kept for the next request that starts the same way.

    A follow-up question about the same image renders as the previous prompt, the previous
    answer and the new turn; only the new turn then goes through the LM, and the vision tower
    does not run at all. Another question on the same image (no history) reuses the system
    prompt and the image. Matching is by token ids and by equal pixel values, so a different
    image or an edited history only reuses what is still identical. The model's weights must
    not change while a cache is in use (:meth:`clear` it after training steps).
    """

    def __init__(self) -> None:
        self.ids: list[int] = []  # tokens whose keys/values are in `cache`
        self.cache = None
        self.pixel_values: torch.Tensor | None = None
        self.visual: torch.Tensor | None = None  # projected images of `pixel_values`
        self.lock = threading.Lock()

    def clear(self) -> None:
        self.ids, self.cache, self.pixel_values, self.visual = [], None, None, None

    def _same_images(self, pixel_values: torch.Tensor | None) -> bool:
        old = self.pixel_values
        if old is None or pixel_values is None:
            return old is None and pixel_values is None
        return (
            old.shape == pixel_values.shape
            and old.device == pixel_values.device
            and bool(torch.equal(old, pixel_values))
        )

    def resume(
        self, model: GeoAssistModel, input_ids: torch.Tensor, pixel_values: torch.Tensor | None
    ) -> tuple[torch.Tensor, object, int]:
        """The embeddings of the tokens of ``input_ids`` (1 row) that still have to run, the
        cache to continue from, and how many leading tokens that cache already holds."""
        ids = input_ids[0].tolist()
        if not self._same_images(pixel_values):
            self.clear()
        reused = 0
        if self.cache is not None:
            for old, new in zip(self.ids, ids, strict=False):
                if old != new:
                    break
                reused += 1
            reused = min(reused, len(ids) - 1)  # the last prompt token must run to give logits
        cache = self.cache if reused > 0 else None
        if cache is not None and cache.get_seq_length() > reused:
            cache.crop(reused - cache.get_seq_length())  # a negative count drops that many
        rest = input_ids[:, reused:]
        if reused > 0 and not bool((rest == model.image_token_id).any()):
            embeds = model.token_embeddings(rest)  # the images are all in the cache
        else:
            embeds, self.visual = model._embed(input_ids, pixel_values, self.visual)
            embeds = embeds[:, reused:]
        self.pixel_values = pixel_values
        self.ids = ids[:reused]
        self.cache = cache
        return embeds, cache, reused

    def commit(self, cache, fed: list[int]) -> None:
        """Record that ``fed`` tokens went through the LM and ``cache`` now holds them too."""
        self.ids = self.ids + fed
        self.cache = cache
