"""The assembled model: vision tower → projector → causal LM (optionally with LoRA).

Sequences carry one ``<image>`` token id per visual token (``chat.render``
expands each image slot to exactly ``config.num_image_tokens`` ids). The model
replaces those positions with projected vision features before the LM runs;
the ``<image>`` id itself is never looked up in the embedding table.

Labels are aligned with ``input_ids`` (not shifted); the shift to next-token
targets happens in exactly one place, :func:`causal_lm_loss`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from geoassist.config import ModelConfig
from geoassist.errors import ImageSlotMismatchError
from geoassist.model.lm import build_lm
from geoassist.model.projector import VisualProjector
from geoassist.model.tokenizer import end_token_id, image_token_id
from geoassist.model.vision import VisionTower

if TYPE_CHECKING:
    from geoassist.model.prefix_cache import PrefixCache

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets: ``labels[:, t]`` is the token at position t, so the output at t - 1 predicts it.

    This is the one place labels are shifted; position t of the result is the target of output t.
    """
    return labels[:, 1:]


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over supervised positions (labels != -100)."""
    shift_logits = logits[:, :-1, :].float()
    targets = shift_labels(labels)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


@dataclass
class ModelOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    # The LM's final hidden state at every <seg> token of the input, in reading order
    # (rows first), for the region decoder; None for a model without one.
    seg_hidden: torch.Tensor | None = None


@dataclass
class SamplingConfig:
    """How the next token is chosen. ``do_sample=False`` is greedy decoding."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.do_sample or self.temperature <= 0:
            return logits.argmax(dim=-1)
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1])).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop = (
                cumulative - sorted_logits.softmax(-1) > self.top_p
            )  # keep the first token past top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class GeoAssistModel(nn.Module):
    def __init__(self, config: ModelConfig, tokenizer, lm: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.vision = VisionTower(config.vision)
        self.lm = lm if lm is not None else build_lm(config.lm, vocab_size=len(tokenizer))
        lm_dim = self.lm.get_input_embeddings().embedding_dim
        self.projector = VisualProjector(
            config.projector,
            self.vision.width,
            lm_dim,
            has_cls_token=self.vision.config.use_cls_token,
        )
        self.image_token_id = image_token_id(tokenizer)
        self.end_token_id = end_token_id(tokenizer)
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.region_decoder, self.seg_token_id = None, None
        if config.region_decoder is not None:
            self._add_region_decoder(lm_dim)
        # transformers renamed `past_key_values` to `cache` during 5.x; speak whichever this version takes.
        base_lm = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        params = inspect.signature(type(base_lm).forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        if config.lora.enabled and not self.has_lora:
            self.add_lora()

    # ------------------------------------------------------- region decoder
    def _add_region_decoder(self, lm_dim: int) -> None:
        """The decoder and its ``<seg>`` token (added to the tokenizer when missing); see
        :mod:`geoassist.model.region_decoder`."""
        from geoassist.model.region_decoder import SEG_TOKEN, RegionDecoder

        if SEG_TOKEN not in self.tokenizer.get_vocab():
            self.tokenizer.add_tokens([SEG_TOKEN], special_tokens=True)
        self.seg_token_id = int(self.tokenizer.convert_tokens_to_ids(SEG_TOKEN))
        self.region_decoder = RegionDecoder(self.config.region_decoder, self.vision.width, lm_dim)

    @property
    def _lm_vocab(self) -> int:
        return int(self.lm.get_input_embeddings().num_embeddings)

    @property
    def seg_column(self) -> int | None:
        """The logits column of ``<seg>``: its id inside the LM's table, else one past the table."""
        if self.seg_token_id is None:
            return None
        return self.seg_token_id if self.seg_token_id < self._lm_vocab else self._lm_vocab

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The LM's embeddings of ``input_ids``, ``<seg>`` from the decoder's own row; ids past
        the LM's table (``<image>``) give the embedding of id 0 (they are replaced later)."""
        embedding = self.lm.get_input_embeddings()
        outside = input_ids >= embedding.num_embeddings
        embeds = embedding(input_ids.masked_fill(outside, 0))
        if self.seg_token_id is not None:
            is_seg = input_ids == self.seg_token_id
            if bool(is_seg.any()):
                row = self.region_decoder.seg_embed.to(embeds.dtype)
                embeds = torch.where(is_seg.unsqueeze(-1), row, embeds)
        return embeds

    def with_seg_logits(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """LM ``logits`` (..., V) with the ``<seg>`` logit of ``hidden`` in :attr:`seg_column`."""
        if self.seg_token_id is None:
            return logits
        seg = self.region_decoder.seg_logit(hidden).to(logits.dtype)
        column = self.seg_column
        if column == logits.shape[-1]:
            return torch.cat([logits, seg], dim=-1)
        logits = logits.clone()
        logits[..., column : column + 1] = seg
        return logits

    def seg_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Next-token ``targets`` with ``<seg>`` moved to its logits column."""
        if self.seg_token_id is None or self.seg_column == self.seg_token_id:
            return targets
        return targets.masked_fill(targets == self.seg_token_id, self.seg_column)

    def picked_ids(self, picked: torch.Tensor) -> torch.Tensor:
        """Chosen logits columns → token ids (the column past the LM's table is ``<seg>``)."""
        if self.seg_token_id is None or self.seg_column == self.seg_token_id:
            return picked
        return picked.masked_fill(picked == self.seg_column, self.seg_token_id)

    def _seg_hidden(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor | None:
        if self.seg_token_id is None:
            return None
        return hidden[input_ids == self.seg_token_id]

    # ----------------------------------------------------------------- LoRA
    @property
    def has_lora(self) -> bool:
        return hasattr(self.lm, "peft_config")

    def add_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        from geoassist.model.lm import quiet_peft

        lora = self.config.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        with quiet_peft():
            self.lm = get_peft_model(self.lm, peft_config)

    def merge_lora(self) -> None:
        """Fold the LoRA weights into the LM (for export or faster inference)."""
        if self.has_lora:
            self.lm = self.lm.merge_and_unload()

    # ------------------------------------------------------------- embedding
    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _image_layout(
        self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of image tokens and the temporal index (image ordinal in its conversation:
        its row, or its segment of a row that packs several) of each image."""
        is_image = input_ids == self.image_token_id
        per_row = images_per_conversation(is_image, segment_ids)
        n = self.config.num_image_tokens
        if bool((per_row % n).any()):
            raise ImageSlotMismatchError(
                f"a sequence holds {per_row.tolist()} <image> tokens, not a multiple of the {n} tokens per image; "
                "render conversations with geoassist.chat.render"
            )
        images_per_row = (per_row // n).tolist()
        max_images = self.config.projector.max_images
        if max(images_per_row, default=0) > max_images:
            raise ImageSlotMismatchError(
                f"a conversation holds {max(images_per_row)} images but this model takes at most {max_images}"
            )
        temporal = torch.tensor(
            [k for count in images_per_row for k in range(count)], dtype=torch.long
        )
        return is_image, temporal

    def encode_images(
        self,
        pixel_values: torch.Tensor | None,
        temporal_index: torch.Tensor,
        *,
        vision_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(num_images, 3, H, W) → (num_images, num_image_tokens, lm_dim).

        ``vision_features`` — the tower's output for these images, computed earlier (a frozen
        tower's cached features, :mod:`geoassist.train.feature_cache`) — skips the tower.
        """
        if vision_features is not None:
            features = vision_features.to(self.projector_dtype)
        else:
            features = self.vision(pixel_values)
            if self.region_decoder is not None and not torch.is_grad_enabled():
                # the decoder reads these images' tower output after generation: keep it
                # (matched by identity, so another request's images never use it)
                self._tower_memo = (pixel_values, features)
        return self.projector(features, temporal_index.to(features.device))

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        visual: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with the image positions filled by the projected images.

        ``visual`` passes the projected images (``encode_images`` output) when they are already
        known, so the vision tower does not run again; ``vision_features`` passes the tower's
        output instead of ``pixel_values``, so only the projector runs.
        """
        embeds, _ = self._embed(input_ids, pixel_values, visual, vision_features)
        return embeds

    def _embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        visual: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        is_image, temporal = self._image_layout(input_ids, segment_ids)
        n_images = len(temporal)
        if pixel_values is not None and vision_features is not None:
            raise ImageSlotMismatchError(
                "give the images either as pixel_values or as vision_features, not both"
            )
        images = vision_features if vision_features is not None else pixel_values
        given = 0 if images is None else images.shape[0]
        if given != n_images:
            raise ImageSlotMismatchError(
                f"the batch has {n_images} image slot(s) but {given} image(s) were given"
            )
        embeds = self.token_embeddings(input_ids.masked_fill(is_image, 0))
        if n_images:
            if visual is None:
                visual = self.encode_images(pixel_values, temporal, vision_features=vision_features)
            embeds = embeds.masked_scatter(
                is_image.unsqueeze(-1), visual.to(embeds.dtype).reshape(-1, visual.shape[-1])
            )
        return embeds, visual

    # --------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_logits: bool = True,
        vision_features: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Logits for every position (and the loss when ``labels`` are given).

        The images come as ``pixel_values`` or, when the tower's output is already known (a
        frozen tower's cached features), as ``vision_features`` (num_images, tokens, width).

        ``segment_ids`` (same shape as ``input_ids``; 1, 2, … for the conversations a row
        packs, 0 for padding) keeps conversations apart: positions restart at each one, no token
        attends to another's, and image ordinals count per conversation. ``attention_mask`` is
        then not used: the LM gets the restarting position ids without a mask, from which
        transformers builds the block-diagonal causal mask (for sdpa and eager attention; flash
        attention reads the same position ids as variable-length sequences).

        With ``labels`` and ``return_logits=False`` (the trainer's path), the LM head
        runs only on supervised positions — most positions are prompt and image
        tokens, and the head over a 49k vocabulary is a large part of the cost.
        """
        if segment_ids is not None:
            embeds, _ = self._embed(
                input_ids, pixel_values, vision_features=vision_features, segment_ids=segment_ids
            )
            attention_mask, positions = None, positions_from_segments(segment_ids)
        else:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            embeds = self.embed_inputs(input_ids, pixel_values, vision_features=vision_features)
            positions = positions_from_mask(attention_mask)
        if labels is not None and not return_logits:
            base = self.lm.get_base_model() if self.has_lora else self.lm
            hidden = base.get_decoder()(
                inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=False
            ).last_hidden_state
            targets = self.seg_targets(shift_labels(labels))
            keep = targets != IGNORE_INDEX
            kept = hidden[:, :-1][keep]
            logits = self.with_seg_logits(base.get_output_embeddings()(kept), kept).float()
            return ModelOutput(
                logits=None,
                loss=F.cross_entropy(logits, targets[keep]),
                seg_hidden=self._seg_hidden(input_ids, hidden),
            )
        with_hidden = self.region_decoder is not None
        out = self.lm(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions,
            use_cache=False, output_hidden_states=with_hidden,
        )  # fmt: skip
        logits, seg_hidden = out.logits, None
        if with_hidden:
            hidden = out.hidden_states[-1]
            logits, seg_hidden = self.with_seg_logits(logits, hidden), self._seg_hidden(input_ids, hidden)
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, self.seg_targets(labels))
        return ModelOutput(logits=logits, loss=loss, seg_hidden=seg_hidden)

    # ------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_steps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        min_new_tokens: int = 0,
        prefix_cache: PrefixCache | None = None,
        seg_states: list[list[torch.Tensor]] | None = None,
        vision_features: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row, step by step (rows that finished yield the pad id).

        Rows are left-padded (the tokenizer pads on the left); positions come from
        the attention mask so padding does not shift them. ``min_new_tokens`` keeps the end
        token from being chosen before that many tokens (for benchmarks that need equal work).
        ``prefix_cache`` (one row only) reuses the keys and values of the tokens this request
        shares with the previous one that used the same cache and the same images — a
        follow-up question skips the image and the earlier turns — and keeps this request's
        for the next. ``seg_states`` (one list per row) receives the LM's final hidden state at
        every ``<seg>`` token a row generates, for the region decoder (once the token has been
        run, so also after the last step when generation stops right after one).
        ``vision_features``, the tower's output for ``pixel_values`` computed by the caller (to
        hand the same output to the region decoder after generation), keeps the tower from
        running again; no prefix cache is used then.
        """
        if vision_features is not None and (
            pixel_values is not None and vision_features.shape[0] != pixel_values.shape[0]
        ):
            raise ImageSlotMismatchError(
                f"vision_features hold {vision_features.shape[0]} images but pixel_values "
                f"{pixel_values.shape[0]}; give the tower's output for exactly these images"
            )
        if prefix_cache is not None and (
            input_ids.shape[0] != 1 or not use_cache or vision_features is not None
        ):
            prefix_cache = None
        # One request at a time uses a prefix cache; another thread meanwhile runs without it.
        if prefix_cache is not None and not prefix_cache.lock.acquire(blocking=False):
            prefix_cache = None
        try:
            yield from self._steps(
                input_ids, attention_mask, pixel_values, max_new_tokens, sampling, use_cache,
                generator, min_new_tokens, prefix_cache, seg_states, vision_features,
            )  # fmt: skip
        finally:
            if prefix_cache is not None:
                prefix_cache.lock.release()

    def _steps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        max_new_tokens: int,
        sampling: SamplingConfig | None,
        use_cache: bool,
        generator: torch.Generator | None,
        min_new_tokens: int,
        prefix_cache: PrefixCache | None,
        seg_states: list[list[torch.Tensor]] | None = None,
        vision_features: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        sampling = sampling or SamplingConfig()
        with_hidden = self.region_decoder is not None
        fed_seg: torch.Tensor | None = None  # rows whose last fed token is <seg>
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = positions_from_mask(attention_mask)
        cache, fed = None, []
        if prefix_cache is not None:
            step_embeds, cache, start = prefix_cache.resume(self, input_ids, pixel_values)
            step_positions = positions[:, start:]
            fed = input_ids[0, start:].tolist()
        else:
            if vision_features is not None:
                pixel_values = None  # the tower's output for them is given
            embeds = self.embed_inputs(input_ids, pixel_values, vision_features=vision_features)
            step_embeds, step_positions = embeds, positions
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens + 1):
            if step == max_new_tokens and (fed_seg is None or not bool(fed_seg.any())):
                return
            # (one more pass after the last step only to run a <seg> chosen last)
            if use_cache:
                if prefix_cache is not None:
                    prefix_cache.cache = None  # not valid while the forward pass extends it
                out = self.lm(
                    inputs_embeds=step_embeds,
                    attention_mask=attention_mask,
                    position_ids=step_positions,
                    use_cache=True,
                    logits_to_keep=1,
                    output_hidden_states=with_hidden,
                    **{self._cache_arg: cache},
                )
                cache = getattr(out, self._cache_arg)
                if prefix_cache is not None:
                    prefix_cache.commit(cache, fed)
            else:
                out = self.lm(
                    inputs_embeds=embeds,
                    attention_mask=attention_mask,
                    position_ids=positions,
                    use_cache=False,
                    logits_to_keep=1,
                    output_hidden_states=with_hidden,
                )
            logits = out.logits[:, -1, :].float()
            if with_hidden:
                last = out.hidden_states[-1][:, -1]
                if seg_states is not None and fed_seg is not None:
                    for row in torch.nonzero(fed_seg).flatten().tolist():
                        seg_states[row].append(last[row].detach())
                logits = self.with_seg_logits(logits, last.float())
            if step == max_new_tokens:
                return
            if step < min_new_tokens:
                logits[:, self.end_token_id] = float("-inf")
            next_tokens = self.picked_ids(sampling.pick(logits, generator))
            next_tokens = next_tokens.masked_fill(finished, self.pad_token_id)
            if with_hidden:
                fed_seg = next_tokens == self.seg_token_id
            yield next_tokens
            finished |= next_tokens == self.end_token_id
            if bool(finished.all()):
                return
            step_embeds = self.token_embeddings(next_tokens.unsqueeze(1))
            step_positions = positions[:, -1:] + 1
            attention_mask = torch.cat(
                [attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1
            )
            positions = torch.cat([positions, step_positions], dim=1)
            fed = next_tokens.tolist() if prefix_cache is not None else fed
            if not use_cache:
                embeds = torch.cat([embeds, step_embeds], dim=1)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        on_step: Callable[[torch.Tensor], None] | None = None,
        min_new_tokens: int = 0,
        prefix_cache: PrefixCache | None = None,
        seg_states: list[list[torch.Tensor]] | None = None,
    ) -> list[list[int]]:
        """Generated token ids per row, without the prompt, cut after the end token."""
        rows: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
        done = [False] * len(rows)
        for tokens in self.generate_steps(
            input_ids,
            attention_mask,
            pixel_values,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            use_cache=use_cache,
            generator=generator,
            min_new_tokens=min_new_tokens,
            prefix_cache=prefix_cache,
            seg_states=seg_states,
        ):
            if on_step is not None:
                on_step(tokens)
            for i, token in enumerate(tokens.tolist()):
                if not done[i]:
                    rows[i].append(token)
                    done[i] = token == self.end_token_id
        return rows


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding safe)."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def positions_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Position ids that restart at 0 wherever the segment changes (each packed conversation,
    and the padding after them, counts from its own start)."""
    index = torch.arange(segment_ids.shape[-1], device=segment_ids.device).expand_as(segment_ids)
    change = torch.ones_like(segment_ids, dtype=torch.bool)
    change[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    starts = torch.where(change, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - starts


def images_per_conversation(is_image: torch.Tensor, segment_ids: torch.Tensor | None) -> torch.Tensor:
    """Image tokens of each conversation in reading order: one count per row, or, with
    ``segment_ids``, one per (row, segment) that holds any."""
    if segment_ids is None:
        return is_image.sum(dim=1)
    key = conversation_keys(segment_ids)[is_image]
    return torch.unique_consecutive(key, return_counts=True)[1]


def conversation_keys(segment_ids: torch.Tensor) -> torch.Tensor:
    """A number per token that is the same exactly for the tokens of one (row, segment) and
    grows in reading order."""
    span = int(segment_ids.max()) + 1 if segment_ids.numel() else 1
    rows = torch.arange(segment_ids.shape[0], device=segment_ids.device).unsqueeze(1)
    return rows * span + segment_ids
