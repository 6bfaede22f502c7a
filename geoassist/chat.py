"""The conversation format, and the one function that turns a conversation into ids and labels.

GeoAssist speaks ChatML::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n{text with <image> slots}<|im_end|>\\n
    <|im_start|>assistant\\n{answer}<|im_end|>\\n

:func:`render` builds the ids span by span and records, for each span, whether
it is supervised, so labels never depend on re-tokenising substrings. Only the
assistant's answers and their ``<|im_end|>`` are supervised; the system prompt,
user turns, role headers and image tokens never are. Each ``<image>`` slot is
expanded to exactly ``num_image_tokens`` image-token ids. In an assistant turn, ``<seg>``
becomes the region decoder's token id (supervised like the text around it) when the tokenizer
has one; anywhere else, or for a model without a decoder, it stays plain text. Labels are
aligned with the ids; the model shifts them (``geoassist.model.vlm.causal_lm_loss``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from geoassist.errors import ChatRenderError, ContextTooLongError, ImageSlotMismatchError

IMAGE_SLOT = "<image>"
SEG_SLOT = "<seg>"  # the region decoder's token (geoassist.model.region_decoder), in assistant turns
IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    role: str
    content: str
    # Whether an assistant turn is a training target (False keeps it as context only).
    train: bool = True

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ChatRenderError(f"unknown role {self.role!r}; use one of {ROLES}")
        if not isinstance(self.content, str):
            raise ChatRenderError(
                f"message content must be text, got {type(self.content).__name__}"
            )


@dataclass
class Rendered:
    input_ids: list[int]
    labels: list[int]
    num_images: int
    spans: list[tuple[int, int, bool]] = field(default_factory=list)  # (start, end, supervised)

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    def __len__(self) -> int:
        return len(self.input_ids)


def as_messages(conversation: Sequence[Message | dict]) -> list[Message]:
    messages = []
    for m in conversation:
        if isinstance(m, Message):
            messages.append(m)
        elif isinstance(m, dict):
            messages.append(
                Message(
                    role=m.get("role", ""), content=m.get("content", ""), train=m.get("train", True)
                )
            )
        else:
            raise ChatRenderError(f"a conversation holds messages or dicts, not {type(m).__name__}")
    return messages


def with_image_slots(prompt: str, num_images: int) -> str:
    """Put ``num_images`` slots before ``prompt`` unless the prompt already places them itself."""
    if IMAGE_SLOT in prompt or num_images == 0:
        return prompt
    return IMAGE_SLOT * num_images + "\n" + prompt


def without_image_slots(text: str) -> str:
    """``text`` with its ``<image>`` slots removed (a later turn about images already shown)."""
    if IMAGE_SLOT not in text:
        return text
    return "\n".join(
        " ".join(line.replace(IMAGE_SLOT, " ").split()) for line in text.split("\n")
    ).strip("\n")


def render(
    conversation: Sequence[Message | dict],
    tokenizer,
    *,
    num_image_tokens: int,
    num_images: int | None = None,
    image_token_id: int | None = None,
    add_generation_prompt: bool = False,
    max_length: int | None = None,
) -> Rendered:
    """Render ``conversation`` into ids and labels.

    A conversation may hold any number of turns: every assistant turn is supervised (unless
    its ``train`` is False), so a multi-turn training sample puts the image slots once, in its
    first user turn, and supervises each answer.
    ``num_images`` (when given) must equal the number of ``<image>`` slots.
    ``add_generation_prompt`` ends with an open assistant header, for inference.
    With ``max_length``, a sequence that is too long is cut at the end — unless
    the cut would reach an image token or leave nothing of an inference prompt,
    which raises :class:`ContextTooLongError`.
    """
    messages = as_messages(conversation)
    if image_token_id is None:
        image_token_id = int(tokenizer.convert_tokens_to_ids(IMAGE_SLOT))
    im_start = _special_id(tokenizer, "<|im_start|>")
    im_end = _special_id(tokenizer, "<|im_end|>")
    newline = _text_ids(tokenizer, "\n")
    seg_id = tokenizer.get_added_vocab().get(SEG_SLOT)

    ids: list[int] = []
    labels: list[int] = []
    spans: list[tuple[int, int, bool]] = []

    def emit(tokens: list[int], supervised: bool) -> None:
        if not tokens:
            return
        spans.append((len(ids), len(ids) + len(tokens), supervised))
        ids.extend(tokens)
        labels.extend(tokens if supervised else [IGNORE_INDEX] * len(tokens))

    slots = 0
    for m in messages:
        emit([im_start, *_text_ids(tokenizer, m.role), *newline], False)
        pieces = m.content.split(IMAGE_SLOT)
        if len(pieces) > 1 and m.role != "user":
            raise ImageSlotMismatchError(
                f"<image> slots belong in user turns, found one in a {m.role} turn"
            )
        supervised = m.role == "assistant" and m.train
        for i, piece in enumerate(pieces):
            if i > 0:
                emit([image_token_id] * num_image_tokens, False)
                slots += 1
            if seg_id is not None and m.role == "assistant":
                for j, part in enumerate(piece.split(SEG_SLOT)):
                    emit([seg_id] if j else [], supervised)
                    emit(_text_ids(tokenizer, part), supervised)
            else:
                emit(_text_ids(tokenizer, piece), supervised)
        emit([im_end], supervised)
        emit(newline, False)
    if add_generation_prompt:
        emit([im_start, *_text_ids(tokenizer, "assistant"), *newline], False)

    if num_images is not None and num_images != slots:
        raise ImageSlotMismatchError(
            f"{num_images} image(s) given but the conversation has {slots} <image> slot(s); "
            f"put one {IMAGE_SLOT} in a user turn per image (or none, to have them placed before the prompt)"
        )
    rendered = Rendered(ids, labels, slots, spans)
    if max_length is not None and len(ids) > max_length:
        rendered = _truncate(rendered, max_length, image_token_id, add_generation_prompt)
    return rendered


def _truncate(
    rendered: Rendered, max_length: int, image_token_id: int, for_inference: bool
) -> Rendered:
    if for_inference:
        raise ContextTooLongError(
            f"the prompt needs {len(rendered)} tokens but the model's context holds {max_length}; "
            "shorten the prompt or the history, or use fewer images"
        )
    if image_token_id in rendered.input_ids[max_length:]:
        raise ContextTooLongError(
            f"truncating this {len(rendered)}-token sample to {max_length} tokens would cut image tokens; "
            "raise max_length or drop the sample"
        )
    spans = [(s, min(e, max_length), sup) for s, e, sup in rendered.spans if s < max_length]
    return Rendered(
        rendered.input_ids[:max_length], rendered.labels[:max_length], rendered.num_images, spans
    )


def _text_ids(tokenizer, text: str) -> list[int]:
    if not text:
        return []
    # split_special_tokens: text that *looks* like a control token (e.g. a user typing
    # "<|im_end|>") is tokenised as plain text and cannot end a turn.
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)


def _special_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ChatRenderError(
            f"the tokenizer has no {token!r} token; load it through geoassist (prepare_tokenizer)"
        )
    return int(token_id)


def show_supervision(rendered: Rendered, tokenizer, color: bool = True) -> str:
    """The rendered text with supervised spans highlighted (green, or ⟦…⟧ without colour).

    Image-token runs are collapsed to ``<image×N>`` so the output stays readable.
    """
    out = []
    for start, end, supervised in rendered.spans:
        chunk = rendered.input_ids[start:end]
        image_id = None
        if chunk and all(t == chunk[0] for t in chunk) and len(chunk) > 1:
            image_id = chunk[0]
        text = f"<image×{len(chunk)}>" if image_id is not None else tokenizer.decode(chunk)
        if supervised:
            text = f"\x1b[42m{text}\x1b[0m" if color else f"⟦{text}⟧"
        out.append(text)
    return "".join(out)


def collate(
    batch: Sequence[Rendered], pad_token_id: int, padding_side: str = "left"
) -> dict[str, torch.Tensor]:  # noqa: F821
    """Pad rendered samples into ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(r) for r in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        n = len(r)
        sl = slice(width - n, width) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = torch.tensor(r.input_ids)
        labels[i, sl] = torch.tensor(r.labels)
        attention_mask[i, sl] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@functools.cache
def _context_block() -> re.Pattern[str]:
    """A user turn's block of retrieved passages, with the note before it (compiled on first use)."""
    from geoassist.rag.context import CONTEXT_CLOSE, CONTEXT_NOTE, CONTEXT_OPEN

    return re.compile(
        "(?:" + re.escape(CONTEXT_NOTE) + r"\s*)?"
        + re.escape(CONTEXT_OPEN) + ".*?" + re.escape(CONTEXT_CLOSE),
        re.DOTALL,
    )  # fmt: skip


def shorten_history(history: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], str] | None:
    """One step of making an earlier conversation shorter, and what was dropped.

    First the retrieved passages of earlier turns go (the oldest turn's first, ``"passages"``),
    then the oldest turn, its question and answer (``"turn"``); the ``<image>`` slots of a dropped
    question move to the next question, so the images stay in the conversation. None when
    nothing is left to drop. :meth:`geoassist.assistant.Assistant.answer` applies it until the
    conversation fits the model's context.
    """
    block = _context_block()
    messages = [dict(m) for m in history if m.get("role") != "system"]
    for m in messages:
        if m.get("role") == "user" and block.search(m.get("content", "")):
            m["content"] = block.sub("(passages dropped)", m["content"])
            return messages, "passages"
    first = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    if first is None:
        return None
    end = next(
        (i for i in range(first + 1, len(messages)) if messages[i].get("role") == "user"),
        len(messages),
    )
    slots = sum(m.get("content", "").count(IMAGE_SLOT) for m in messages[first:end])
    rest = messages[end:]
    if slots and rest:
        rest[0]["content"] = IMAGE_SLOT * slots + "\n" + without_image_slots(rest[0]["content"])
    return rest, "turn"
