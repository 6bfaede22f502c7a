"""The Gradio Blocks of ``geoassist serve``: imagery on the left, the conversation on the right.

:func:`build_app` wires an :class:`~geoassist.app.engine.Engine` into one
``gr.Blocks``. Every handler turns :class:`~geoassist.errors.GeoAssistError` into a
message in the chat (or a ``gr.Error`` for API callers); anything unexpected is
logged and reported in one line, never as a stack trace.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.app import overlays, render
from geoassist.app.engine import AUTO_LABEL, Engine, timeout_note
from geoassist.app.inputs import (
    AUTO,
    COMPOSITE_NAMES,
    IMAGE_SUFFIXES,
    SIDECAR_SUFFIXES,
    BandChoice,
    Quicklook,
    Staged,
    make_quicklook,
    stage_uploads,
    user_facing,
)
from geoassist.errors import GeoAssistError
from geoassist.extras import require

gr = require("gradio", "app", "the GeoAssist app")
logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
UNEXPECTED = (
    "Something went wrong on the server while answering (details are in its log). Try again."
)

CSS = """
#ga-header {align-items: baseline; gap: 1rem; padding: 0 .25rem;}
#ga-header h1 {margin: 0; font-size: 1.45rem; letter-spacing: .01em;}
#ga-status {font-size: .85rem; opacity: .8; text-align: right;}
#ga-status p {margin: 0;}
#ga-info {min-height: 1.4rem;}
#ga-info p {margin: .1rem 0; font-size: .85rem !important;}
#ga-geo {font-size: .8rem; opacity: .85;}
#ga-geo p {margin: 0;}
#ga-send {min-width: 90px;}
.ga-compact {gap: .4rem !important;}
.ga-legend {font-size: .8rem; margin: .2rem 0 .1rem;}
.ga-legend-title {font-weight: 600;}
.ga-ramp {height: 12px; border-radius: 3px; border: 1px solid #8884; margin: .15rem 0;}
.ga-ticks {display: flex; justify-content: space-between; opacity: .85;}
footer {display: none !important;}
/* Narrow screens: the conversation first, short panels, the prompt and Send kept in view. */
@media (max-width: 700px) {
  #ga-main {flex-direction: column !important;}
  #ga-main > div {min-width: 0 !important; width: 100% !important;}
  #ga-conversation {order: -1;}
  #ga-chat {height: 300px !important; max-height: 300px !important;}
  #ga-compose {position: sticky; bottom: 0; z-index: 20; background: var(--background-fill-primary);
               padding: .3rem 0; box-shadow: 0 -4px 8px #0002;}
  #ga-annotated, #ga-region-image {max-height: 380px;}
  #ga-status {display: none;}
}
"""

# Images with a longer side than this are said to be looked over first while the overview of a
# large scene is read and answered (the tile count follows once tiles are answered).
LARGE_SIDE = 1024

# Answers being generated, by browser session: Stop cancels the session's token.
_RUNNING: dict[str, Any] = {}
_RUNNING_LOCK = threading.Lock()


def _session_key(request: Any) -> str:
    return str(getattr(request, "session_hash", None) or id(request))


class _Progress:
    """The planner's ``progress(done, total)``, read by the page while an answer is worked on."""

    def __init__(self, scene: tuple[int, int] | None = None) -> None:
        self.done = self.total = 0
        self.scene = scene  # the last image's size when it is large enough to be read in tiles

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def line(self, elapsed: float) -> str:
        if self.total:
            return (
                f"Working — reading the scene in detail: {self.done} of {self.total} tiles · "
                f"{elapsed:.0f} s"
            )
        if self.scene is not None:
            w, h = self.scene
            return f"Working — looking over the whole {w}×{h} scene first · {elapsed:.0f} s"
        return f"Working — {elapsed:.0f} s so far"


@dataclass
class Session:
    """Everything one browser tab has told the app; kept in ``gr.State``."""

    staged: Staged | None = None
    looks: list[Quicklook] = field(default_factory=list)
    choice: BandChoice = field(default_factory=BandChoice)
    history: list[dict[str, str]] = field(default_factory=list)
    chat: list[dict[str, Any]] = field(default_factory=list)
    region: list[float] | None = None
    corner: tuple[float, float] | None = None
    answer: Any = None
    turn: int = 0
    uploaded: list[str] = field(default_factory=list)  # the upload component's files, as last seen

    def reset_conversation(self) -> None:
        self.history, self.chat, self.answer, self.turn = [], [], None, 0

    def cleanup(self) -> None:
        if self.staged is not None:
            self.staged.cleanup()
            self.staged = None


def _cleanup_session(session: Any) -> None:
    if isinstance(session, Session):
        session.cleanup()


class StagingArea:
    """One temporary folder per process for uploads linked together and answer downloads."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="geoassist-app-"))
        atexit.register(shutil.rmtree, self.root, True)


def _upload_roots() -> list[Path]:
    roots = [Path(gr.utils.get_upload_folder())]
    if EXAMPLES_DIR.is_dir():
        roots.append(EXAMPLES_DIR)
    return roots


# ---------------------------------------------------------------------- view helpers


def _annotated(look: Quicklook | None, answer: Any, region: list[float] | None) -> Any:
    if look is None:
        return gr.AnnotatedImage(value=None)
    overlay = overlays.build_overlay(look.rgb, answer, scale=look.scale, region=region)
    return gr.AnnotatedImage(value=overlay.annotated_value, color_map=overlay.color_map)


def _region_view(look: Quicklook | None, region: list[float] | None, corner) -> Any:
    if look is None:
        return None
    marks = overlays.build_overlay(look.rgb, None, scale=look.scale, region=region)
    image = overlays.flatten(marks)
    if corner is not None:
        from PIL import ImageDraw

        x, y = corner[0] * look.scale, corner[1] * look.scale
        r = max(3, round(max(image.size) / 120))
        ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), outline="white", width=2)
    return image


def _region_text(region: list[float] | None) -> str:
    return ", ".join(f"{v:.0f}" for v in region) if region else ""


def _gallery(session: Session) -> list[tuple[Any, str]]:
    items = []
    n = len(session.looks)
    for i, (look, name) in enumerate(zip(session.looks, session.staged.names, strict=False)):
        when = "" if n == 1 else (" · before" if i == 0 else " · after" if i == n - 1 else "")
        items.append((look.rgb, f"{i + 1}. {name}{when}"))
    return items


def _inputs_view(session: Session) -> tuple[Any, list[tuple[Any, str]]]:
    """The before/after slider (two or more images: first against last) and the gallery."""
    if len(session.looks) < 2:
        return gr.ImageSlider(value=None, visible=False), _gallery(session) if session.looks else []
    first, last = session.looks[0].rgb, session.looks[-1].rgb
    if first.shape != last.shape:
        from PIL import Image as PILImage

        size = (last.shape[1], last.shape[0])
        first = np.asarray(PILImage.fromarray(first).resize(size, PILImage.BILINEAR))
    return gr.ImageSlider(value=(first, last), visible=True), _gallery(session)


def _info(session: Session) -> str:
    if not session.looks:
        return (
            "Upload an image (PNG, JPEG, GeoTIFF…), two for before/after, or pick an example below."
        )
    lines = []
    for i, look in enumerate(session.looks):
        number = f"{i + 1}. " if len(session.looks) > 1 else ""
        shown = "" if look.bands_note == "true colour" else f" · shown as {look.bands_note}"
        lines.append(f"{number}{look.describe}{shown}")
    return "  \n".join(lines)


def _downloads(
    session: Session, staging: StagingArea
) -> tuple[list[str] | None, str, list[list[Any]]]:
    """Files to download (GeoJSON when georeferenced, the annotated PNG), the geo line and table."""
    answer, look = session.answer, session.looks[-1] if session.looks else None
    if answer is None or look is None:
        return None, "", []
    folder = Path(tempfile.mkdtemp(prefix="answer-", dir=staging.root))
    stem = f"geoassist-answer-{session.turn}"
    files = []
    rows = overlays.geometry_rows(answer)
    shapes = rows or (answer.mask is not None and answer.mask.any())
    if shapes:
        overlay = overlays.build_overlay(look.rgb, answer, scale=look.scale, region=session.region)
        png = folder / f"{stem}.png"
        overlays.flatten(overlay).save(png)
        files.append(str(png))
    geojson = None
    try:
        geojson = overlays.answer_geojson(answer)
    except GeoAssistError as exc:
        logger.info("no GeoJSON for this answer: %s", exc)
    if geojson is not None:
        path = folder / f"{stem}.geojson"
        path.write_text(json.dumps(geojson, ensure_ascii=False, indent=1), encoding="utf-8")
        files.insert(0, str(path))
    elif shapes:
        # No georeference: the geometry in pixels of the image, as JSON.
        path = folder / f"{stem}-pixels.json"
        record = {k: v for k, v in answer.to_dict().items() if k not in ("raw", "coverage")}
        record["coordinates"] = "pixels of the image (x right, y down, origin top-left)"
        path.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        files.insert(0, str(path))
    return files or None, overlays.describe_geo(answer), rows


# ---------------------------------------------------------------------- the app


def build_app(engine: Engine, *, examples_dir: Path | None = EXAMPLES_DIR) -> gr.Blocks:
    """The app's Blocks (not launched; :func:`geoassist.app.server.serve` launches it)."""
    staging = StagingArea()
    choices = engine.task_choices()
    labels = [c.label for c in choices]
    hints = {c.label: c.hint for c in choices}
    default_task = AUTO_LABEL if AUTO_LABEL in labels else labels[0]
    from geoassist.sensors import COMPOSITES, INDICES, list_sensors

    file_types = list(IMAGE_SUFFIXES + SIDECAR_SUFFIXES)

    with gr.Blocks(title="GeoAssist", fill_width=True) as demo:
        state = gr.State(Session(), delete_callback=_cleanup_session)
        with gr.Row(elem_id="ga-header"):
            gr.Markdown("# GeoAssist", elem_id="ga-title")
            gr.Markdown(engine.status_line(), elem_id="ga-status")
        with gr.Row(equal_height=False, elem_id="ga-main"):
            # ----------------------------------------------------------- imagery
            with gr.Column(scale=6, min_width=380, elem_id="ga-imagery"):
                # Any file is accepted here, so that one GeoAssist cannot read gets a message.
                files = gr.File(
                    label="Imagery — one image, or before/after in time order",
                    file_count="multiple",
                    elem_id="ga-files",
                )
                add_series = gr.Checkbox(
                    False,
                    label="Add to series (new uploads join the images above instead of "
                    "replacing them)",
                    elem_id="ga-add",
                )
                info = gr.Markdown(_info(Session()), elem_id="ga-info")
                with gr.Accordion("Bands (multispectral images)", open=False) as bands_box:
                    with gr.Row():
                        sensor = gr.Dropdown(
                            [AUTO, *list_sensors()], value=AUTO, label="Sensor preset", scale=2
                        )
                        composite = gr.Dropdown(
                            [(AUTO, AUTO)]
                            + [(COMPOSITE_NAMES.get(k, k), k) for k in (*COMPOSITES, *INDICES)],
                            value=AUTO,
                            label="Composite",
                            scale=2,
                            elem_id="ga-composite",
                        )
                        bands = gr.Textbox(
                            label="Or bands (R,G,B)", placeholder="e.g. 4,3,2", scale=2
                        )
                with gr.Tabs():
                    with gr.Tab("Answer on the image", id="answer"):
                        annotated = gr.AnnotatedImage(
                            label="Answer on the image",
                            show_label=False,
                            height=560,
                            format="png",
                            elem_id="ga-annotated",
                        )
                        legend = gr.HTML("", elem_id="ga-legend")
                        geo_line = gr.Markdown("", elem_id="ga-geo")
                    with gr.Tab("Mark a region", id="region"):
                        gr.Markdown(
                            "Click two opposite corners to mark a box; then ask with "
                            "**Point at a region**.",
                            elem_id="ga-region-help",
                        )
                        region_image = gr.Image(
                            label="Click two corners",
                            show_label=False,
                            interactive=False,
                            height=520,
                            format="png",
                            buttons=["fullscreen"],
                            elem_id="ga-region-image",
                        )
                        with gr.Row():
                            region_box = gr.Textbox(
                                label="Region (pixels: x1, y1, x2, y2)",
                                elem_id="ga-region-box",
                                placeholder="click the image, or type x1, y1, x2, y2",
                                scale=4,
                            )
                            clear_region = gr.Button("Clear region", scale=1, size="sm")
                    with gr.Tab("Inputs · before/after", id="inputs"):
                        slider = gr.ImageSlider(
                            label="Before / after (drag the handle)",
                            height=520,
                            format="png",
                            interactive=False,
                            visible=False,
                            elem_id="ga-slider",
                        )
                        gallery = gr.Gallery(
                            label="Inputs, in the order the model reads them",
                            columns=4,
                            height=170,
                            object_fit="contain",
                            format="png",
                        )
                with gr.Accordion("Found objects and downloads", open=True, visible=False) as found:
                    table = gr.Dataframe(
                        headers=overlays.GEOMETRY_HEADERS,
                        value=[],
                        interactive=False,
                        max_height=220,
                        column_widths=["7%", "24%", "17%", "24%", "28%"],
                        wrap=True,
                        elem_id="ga-table",
                    )
                    downloads = gr.File(
                        label="Downloads (GeoJSON for georeferenced images, pixel JSON "
                        "otherwise, annotated PNG)",
                        file_count="multiple",
                        interactive=False,
                        height=90,
                        elem_id="ga-downloads",
                    )
            # ----------------------------------------------------------- conversation
            with gr.Column(scale=5, min_width=320, elem_id="ga-conversation"):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    height=560,
                    buttons=["copy"],
                    feedback_options=None,
                    placeholder="Answers appear here, token by token.",
                    elem_id="ga-chat",
                )
                with gr.Column(elem_id="ga-compose"):
                    with gr.Row(elem_classes="ga-compact"):
                        task = gr.Dropdown(
                            labels, value=default_task, label="Task", scale=2, min_width=160,
                            elem_id="ga-task",
                        )  # fmt: skip
                        prompt = gr.Textbox(
                            label="Prompt",
                            placeholder=hints.get(default_task, ""),
                            lines=2,
                            max_lines=6,
                            max_length=engine.limits.max_prompt_chars,
                            scale=5,
                            min_width=160,
                            elem_id="ga-prompt",
                        )
                    with gr.Row(elem_classes="ga-compact", elem_id="ga-buttons"):
                        send = gr.Button("Send", variant="primary", elem_id="ga-send", scale=3)
                        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="ga-stop")
                        new_chat = gr.Button("New conversation", scale=2)
                if examples_dir is not None and examples_dir.is_dir():
                    _examples(examples_dir, files, task, prompt, labels)

        # Hidden inputs for the `ask` API endpoint (gradio_client scripts).
        with gr.Row(visible=False):
            api_image = gr.File(label="image", file_types=file_types)
            api_prompt = gr.Textbox(label="prompt")
            api_task = gr.Textbox(label="task", value="")
            api_answer = gr.Textbox(label="answer")
            api_button = gr.Button("ask")

        # ------------------------------------------------------------- handlers
        def message(exc: Exception, staged: Staged | None = None) -> str:
            """The error in the user's words: their file names, never the server's paths."""
            names = staged.user_names if staged is not None else {}
            return user_facing(str(exc), names, [staging.root, *_upload_roots()])

        def load_images(paths, add_v, sensor_v, composite_v, bands_v, session: Session):
            paths = [str(p) for p in (paths or [])]
            if paths and sorted(paths) == sorted(session.uploaded):
                return (session, *[gr.skip()] * 15)  # the list this handler itself just set
            previous = list(session.uploaded)
            new = [p for p in paths if p not in previous]
            files_value: Any = gr.skip()
            replaced = False
            if add_v and previous and new and not all(p in paths for p in previous):
                paths = previous + new  # add to series, whatever the component kept
                files_value = paths
            elif not add_v and new and len(new) < len(paths):
                paths, files_value, replaced = new, new, True  # a new upload replaces
            session.uploaded = paths
            session.cleanup()
            session.looks, session.region, session.corner = [], None, None
            session.reset_conversation()
            note = ""
            try:
                session.choice = BandChoice.from_form(bands_v, sensor_v, composite_v)
                session.staged = stage_uploads(
                    paths,
                    allowed_roots=_upload_roots(),
                    staging_root=staging.root,
                    max_images=engine.max_images,
                )
                if session.staged is not None:
                    session.looks = [
                        make_quicklook(p, session.choice, max_side=engine.limits.display_side)
                        for p in session.staged.images
                    ]
            except GeoAssistError as exc:
                note = f"⚠️ {message(exc, session.staged)}"
                session.cleanup()
                session.looks = []
            except Exception:
                logger.exception("reading uploads failed")
                session.cleanup()
                session.looks = []
                note = "⚠️ These files could not be read (details are in the server log)."
            look = session.looks[-1] if session.looks else None
            multiband = any(len(lk.band_names) > 3 for lk in session.looks)
            text = note or _info(session)
            if replaced and not note:
                text += (
                    "  \n*The new upload replaced the earlier images; tick **Add to series** to "
                    "add images to them instead.*"
                )
            return (
                session,
                [],
                _annotated(look, None, None),
                _region_view(look, None, None),
                *_inputs_view(session),
                text,
                "",
                [],
                None,
                gr.Accordion(open=multiband or bool(note and "band" in note.lower())),
                "",
                gr.Accordion(visible=False),
                files_value,
                look.legend if look is not None else "",
            )

        def redraw_bands(sensor_v, composite_v, bands_v, session: Session):
            if session.staged is None:
                return (session, *[gr.skip()] * 6)
            try:
                choice = BandChoice.from_form(bands_v, sensor_v, composite_v)
                looks = [
                    make_quicklook(p, choice, max_side=engine.limits.display_side)
                    for p in session.staged.images
                ]
            except GeoAssistError as exc:
                skip = gr.skip()
                return session, skip, skip, skip, skip, f"⚠️ {message(exc, session.staged)}", skip
            session.choice, session.looks = choice, looks
            look = looks[-1]
            return (
                session,
                _annotated(look, session.answer, session.region),
                _region_view(look, session.region, None),
                *_inputs_view(session),
                _info(session),
                look.legend,
            )

        def pick_corner(session: Session, evt: gr.SelectData):
            look = session.looks[-1] if session.looks else None
            if look is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
                return session, gr.skip(), gr.skip(), gr.skip()
            x, y = evt.index[0] / look.scale, evt.index[1] / look.scale
            x = min(max(x, 0.0), look.size[0])
            y = min(max(y, 0.0), look.size[1])
            if session.corner is None:
                session.corner, session.region = (x, y), None
                return session, _region_view(look, None, session.corner), "", gr.skip()
            region = overlays.region_from_clicks(session.corner, (x, y))
            session.corner, session.region = None, region
            return (
                session,
                _region_view(look, region, None),
                _region_text(region),
                "Point at a region" if region and "Point at a region" in labels else gr.skip(),
            )

        def type_region(text: str, session: Session):
            look = session.looks[-1] if session.looks else None
            text = (text or "").strip()
            if not text:
                session.region = None
                return session, _region_view(look, None, None), gr.skip()
            try:
                values = [float(v) for v in text.replace(",", " ").split()]
                if len(values) != 4:
                    raise ValueError
                region = overlays.region_from_clicks(values[:2], values[2:])
                if region is None:
                    raise ValueError
            except ValueError:
                gr.Warning("A region is four numbers in pixels: x1, y1, x2, y2")
                return session, gr.skip(), gr.skip()
            session.region, session.corner = region, None
            return session, _region_view(look, region, None), "Point at a region"

        def drop_region(session: Session):
            look = session.looks[-1] if session.looks else None
            session.region, session.corner = None, None
            return session, _region_view(look, None, None), ""

        def new_conversation(session: Session):
            session.reset_conversation()
            look = session.looks[-1] if session.looks else None
            return (
                session, [], _annotated(look, None, session.region), "", [], None,
                gr.Accordion(visible=False),
            )  # fmt: skip

        def respond(prompt_v, task_v, session: Session, request: gr.Request):
            from geoassist.request import CancelToken

            skip = gr.skip()
            images = session.staged.images if session.staged else []
            user_text = (prompt_v or "").strip() or f"*{task_v}*"
            if (prompt_v or "").strip() and task_v not in ("Chat", AUTO_LABEL):
                user_text = f"*{task_v}:* {render.preview_text(prompt_v.strip())}"
            elif (prompt_v or "").strip():
                user_text = render.preview_text(prompt_v.strip())
            session.chat = [*session.chat, {"role": "user", "content": user_text}]
            session.chat.append({"role": "assistant", "content": "…"})
            yield session.chat, "", skip, skip, skip, skip, skip, session
            look = session.looks[-1] if session.looks else None
            large = look is not None and max(look.size) > LARGE_SIDE
            cancel, progress = CancelToken(), _Progress(look.size if large else None)
            key = _session_key(request)
            with _RUNNING_LOCK:
                _RUNNING[key] = cancel
            events: queue.Queue = queue.Queue()
            kind = None

            def work(kind_: Any, history: list, region: Any, choice: BandChoice) -> None:
                # The answer is worked on in a thread, so that the page hears of progress and
                # Stop while a large scene is read tile by tile.
                try:
                    stream = engine.stream(
                        images, prompt_v or "", task=kind_, history=history, region=region,
                        choice=choice, cancel=cancel, progress=progress,
                    )  # fmt: skip
                    for piece in stream:
                        events.put(("piece", piece))
                    events.put(("done", stream.answer))
                except BaseException as exc:  # handed to the page's loop, which reports it
                    events.put(("error", exc))

            try:
                kind = engine.task_for(task_v)
                worker = threading.Thread(
                    target=work, args=(kind, session.history, session.region, session.choice),
                    name="geoassist-answer", daemon=True,
                )  # fmt: skip
                worker.start()
                start, raw, shown, timed_out = time.monotonic(), "", "", False
                while True:
                    try:
                        what, value = events.get(timeout=0.25)
                    except queue.Empty:
                        elapsed = time.monotonic() - start
                        if elapsed > engine.limits.timeout_s and not cancel.cancelled:
                            cancel.cancel()
                            timed_out = True
                        if elapsed < 1.0:
                            continue
                        what, value = "tick", progress.line(elapsed)
                    if what == "piece":
                        raw += value
                    elif what == "error":
                        raise value
                    elif what == "done":
                        answer = value
                        break
                    text = render.preview_text(raw).strip()
                    if what == "tick" and not raw:
                        text = value
                    elif what == "tick":
                        text = f"{text}\n\n*{value}*"
                    if text and text != shown:
                        shown = text
                        session.chat[-1] = {"role": "assistant", "content": text}
                        yield session.chat, skip, skip, skip, skip, skip, skip, session
                cut = timeout_note(engine.limits.timeout_s) if timed_out else ""
                session.answer, session.history = answer, list(answer.history)
                session.turn += 1
                final = render.final_text(answer, cut_note=cut)
                if timed_out:
                    final = final.replace(render.STOPPED_NOTE, "").strip() + cut
                session.chat[-1] = {"role": "assistant", "content": final}
                kb = getattr(engine.assistant, "kb", None)
                session.chat += render.citation_messages(
                    answer, passage_for=_passage_lookup(kb) if kb is not None else None
                )
                files_out, geo_text, rows = _downloads(session, staging)
                yield (
                    session.chat,
                    skip,
                    _annotated(look, answer, session.region if answer.task == "region" else None),
                    geo_text,
                    gr.Dataframe(value=rows, visible=bool(rows)),
                    files_out,
                    gr.Accordion(visible=bool(rows or files_out)),
                    session,
                )
            except GeoAssistError as exc:
                session.chat[-1] = {
                    "role": "assistant",
                    "content": f"⚠️ {message(exc, session.staged)}",
                }
                yield session.chat, skip, skip, skip, skip, skip, skip, session
            except Exception:
                logger.exception("answering failed")
                session.chat[-1] = {"role": "assistant", "content": f"⚠️ {UNEXPECTED}"}
                yield session.chat, skip, skip, skip, skip, skip, skip, session
            finally:
                cancel.cancel()  # a page that went away stops its answer too
                with _RUNNING_LOCK:
                    if _RUNNING.get(key) is cancel:
                        del _RUNNING[key]

        def stop_answer(request: gr.Request):
            """Stop: the session's answer ends at its next token or tile; the page stays usable."""
            with _RUNNING_LOCK:
                token = _RUNNING.get(_session_key(request))
            if token is not None:
                token.cancel()

        def api_ask(image, prompt, task):
            """Answer `prompt` about one uploaded image; `task` is optional (e.g. detect, caption)."""
            staged = None
            try:
                staged = stage_uploads(
                    [image] if image else None,
                    allowed_roots=_upload_roots(),
                    staging_root=staging.root,
                    max_images=engine.max_images,
                )
                kind = engine.task_for((task or "").strip() or None)
                images = staged.images if staged else []
                yield from engine.answer_text(images, prompt or "", task=kind)
            except GeoAssistError as exc:
                raise gr.Error(message(exc, staged), print_exception=False) from None
            except Exception:
                logger.exception("answering an API request failed")
                raise gr.Error(UNEXPECTED, print_exception=False) from None
            finally:
                if staged is not None:
                    staged.cleanup()

        # ------------------------------------------------------------- events
        private = {"api_visibility": "private"}
        light = {"concurrency_limit": 4, "concurrency_id": "images", **private}
        files.change(
            load_images,
            [files, add_series, sensor, composite, bands, state],
            [state, chatbot, annotated, region_image, slider, gallery, info, geo_line, table, downloads,
             bands_box, region_box, found, files, legend],
            **light,
        )  # fmt: skip
        for trigger in (sensor.change, composite.change, bands.submit):
            trigger(
                redraw_bands,
                [sensor, composite, bands, state],
                [state, annotated, region_image, slider, gallery, info, legend],
                **light,
            )
        region_image.select(
            pick_corner, [state], [state, region_image, region_box, task], **private
        )
        region_box.submit(type_region, [region_box, state], [state, region_image, task], **private)
        clear_region.click(drop_region, [state], [state, region_image, region_box], **private)
        task.change(
            lambda label: gr.Textbox(placeholder=hints.get(label, "")), [task], [prompt], **private
        )
        model_events = {
            "concurrency_limit": engine.limits.concurrency,
            "concurrency_id": "model",
            **private,
        }
        outputs = [chatbot, prompt, annotated, geo_line, table, downloads, found, state]
        send.click(respond, [prompt, task, state], outputs, **model_events)
        prompt.submit(respond, [prompt, task, state], outputs, **model_events)
        stop.click(stop_answer, None, None, concurrency_limit=None, **private)
        new_chat.click(
            new_conversation, [state], [state, chatbot, annotated, geo_line, table, downloads, found],
            **private,
        )  # fmt: skip
        api_button.click(
            api_ask,
            [api_image, api_prompt, api_task],
            [api_answer],
            api_name="ask",
            api_description="Answer a prompt about one image. Inputs: image file, prompt, task "
            "(optional: caption, vqa, detect, detect_obb, refer, segment, classify…). "
            "Returns the answer text.",
            concurrency_limit=engine.limits.concurrency,
            concurrency_id="model",
        )
    return demo


def _passage_lookup(kb):
    def lookup(entry_id: str) -> str | None:
        try:
            return kb.get(entry_id).text
        except Exception:  # a store without that id (or without get): show the title only
            return None

    return lookup


def _examples(folder: Path, files, task, prompt, labels: list[str]) -> None:
    rows = [
        (["residential.png"], "Find objects", "buildings", "Find buildings"),
        (["residential.png"], "Describe", "", "Describe a neighbourhood"),
        (["farmland.png"], "Classify the scene", "", "Classify farmland"),
        (["change_before.png", "change_after.png"], "What changed", "", "What changed?"),
        (["residential.png"], "Outline", "swimming pools", "Outline pools"),
    ]
    examples, names = [], []
    for images, label, text, name in rows:
        paths = [folder / n for n in images]
        if label in labels and all(p.is_file() for p in paths):
            examples.append([[str(p) for p in paths], label, text])
            names.append(name)
    if examples:
        gr.Examples(
            examples,
            inputs=[files, task, prompt],
            example_labels=names,
            label="Examples (GeoSynth scenes shipped with GeoAssist)",
            examples_per_page=6,
        )


__all__ = ["CSS", "Session", "build_app"]
