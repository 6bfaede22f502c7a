"""Tokenizer helpers: the byte-level tokenizer of random test models, and the special tokens.

Every GeoAssist tokenizer carries the ChatML markers (``<|im_start|>``,
``<|im_end|>``) and one ``<image>`` token whose positions the model fills with
visual embeddings. The ``<image>`` id may lie beyond the LM's embedding table:
the model never looks it up (see :meth:`GeoAssistModel.embed_inputs`).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """A dependency-free byte-level tokenizer (256 byte symbols + specials) for random models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
    )
    tokenizer.add_tokens([IM_START, IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make sure the chat markers and ``<image>`` exist and that padding is defined (left padding)."""
    missing = [t for t in (IM_START, IM_END, IMAGE_TOKEN) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or IM_END
    tokenizer.padding_side = "left"
    return tokenizer


def image_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def end_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.convert_tokens_to_ids(IM_END))
