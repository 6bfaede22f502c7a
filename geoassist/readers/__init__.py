"""Readers of the published dataset formats, in one place for the data recipes and GeoSynth's tests.

Each function takes a dataset's files as their authors lay them out and returns plain
dataclasses or dicts in pixel coordinates (boxes ``[x1, y1, x2, y2]`` floats). Nothing here
knows about GeoSynth or about records: the data recipes turn what these return into records,
and GeoSynth's round-trip tests read its exports back with the same functions.

A file that cannot be read at all raises :class:`DatasetFormatError` (a
:class:`~geoassist.errors.GeoAssistError`) naming the file and what to do. A record inside a
readable file that does not follow the format is a :class:`Malformed` value: the streaming
readers (``read_rsvqa_split``, ``read_caption_images``, ``parse_dota_label``,
``read_fair1m_xml``) return it in place of the record; the convenience readers raise on it
unless given a ``malformed`` list to collect it.

One module per format family: :mod:`.rsvqa`, :mod:`.dota`, :mod:`.voc` (DIOR, DIOR-RSVG,
FAIR1M), :mod:`.captions` (Karpathy JSON, LEVIR-CC), :mod:`.change` (LEVIR-CD, LEVIR-MCI
tokens), :mod:`.coco` (COCO JSON, iSAID palettes), :mod:`.scenes` (class folders, EuroSAT).
"""

from __future__ import annotations

from geoassist.readers.captions import (
    CaptionedImage,
    read_caption_images,
    read_karpathy,
    read_levir_cc,
)
from geoassist.readers.change import load_change_label, read_change_tokens, read_levir_cd
from geoassist.readers.coco import (
    ISAID_PALETTE,
    MaskInstance,
    isaid_instances,
    read_coco,
    read_isaid_masks,
)
from geoassist.readers.common import DatasetFormatError, Malformed, load_json, read_text
from geoassist.readers.dota import DOTAObject, parse_dota_label, read_dota, read_dota_label
from geoassist.readers.rsvqa import (
    RSVQAItem,
    RSVQAQuestion,
    read_rsvqa,
    read_rsvqa_split,
    rsvqa_files,
    rsvqa_question_files,
)
from geoassist.readers.scenes import EUROSAT_SUBDIR, read_eurosat, read_folders
from geoassist.readers.voc import read_dior, read_dior_rsvg, read_fair1m_xml, read_voc

__all__ = [
    "CaptionedImage",
    "DOTAObject",
    "DatasetFormatError",
    "EUROSAT_SUBDIR",
    "ISAID_PALETTE",
    "Malformed",
    "MaskInstance",
    "RSVQAItem",
    "RSVQAQuestion",
    "isaid_instances",
    "load_change_label",
    "load_json",
    "parse_dota_label",
    "read_caption_images",
    "read_change_tokens",
    "read_coco",
    "read_dior",
    "read_dior_rsvg",
    "read_dota",
    "read_dota_label",
    "read_eurosat",
    "read_fair1m_xml",
    "read_folders",
    "read_isaid_masks",
    "read_karpathy",
    "read_levir_cc",
    "read_levir_cd",
    "read_rsvqa",
    "read_rsvqa_split",
    "read_text",
    "read_voc",
    "rsvqa_files",
    "rsvqa_question_files",
]
