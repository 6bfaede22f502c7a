"""Launch the app: one process, one model, a queue in front of it.

Defaults keep a fresh install private: the server binds 127.0.0.1, makes no
public share link, caps uploads and queue length, and runs at most
``concurrency`` answers at once (every session and the ``ask`` API endpoint share
that limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from geoassist.app.engine import Engine, Limits

logger = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    model: str = "geoassist-mini"
    kb: str | None = None
    kb_k: int = 5
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    concurrency: int = 2
    max_queue: int = 32
    max_file_size: str = "50mb"
    max_prompt_chars: int = 2000
    timeout_s: float = 120.0
    max_new_tokens: int = 256
    examples: Path | None = None


def build(options: ServeOptions, engine: Engine | None = None):
    """The queued, not yet launched Blocks and the engine behind it."""
    from geoassist.app.ui import EXAMPLES_DIR, build_app

    limits = Limits(
        max_prompt_chars=options.max_prompt_chars,
        timeout_s=options.timeout_s,
        max_new_tokens=options.max_new_tokens,
        concurrency=options.concurrency,
    )
    if engine is None:
        engine = Engine.load(
            options.model, device=options.device, kb=options.kb, kb_k=options.kb_k, limits=limits
        )
    else:
        engine.limits = limits
    demo = build_app(engine, examples_dir=options.examples or EXAMPLES_DIR)
    demo.queue(max_size=options.max_queue, default_concurrency_limit=options.concurrency)
    return demo, engine


def serve(options: ServeOptions, *, block: bool = True):
    """Load the model, build the app and serve it; returns ``(demo, local_url)`` when not blocking."""
    import gradio as gr

    from geoassist.app.ui import CSS

    demo, engine = build(options)
    logger.info("model %s loaded in %.1f s on %s", engine.model_name, engine.load_s, engine.device)
    _, url, _ = demo.launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        max_file_size=options.max_file_size,
        show_error=False,
        inbrowser=False,
        prevent_thread_lock=True,
        ssr_mode=False,
        footer_links=["api"],
        quiet=True,
        theme=gr.themes.Soft(primary_hue="teal", neutral_hue="slate"),
        css=CSS,
    )
    print(f"GeoAssist is serving {engine.model_name} at {url} (Ctrl-C stops it)", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url
