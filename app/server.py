"""Launch the app: one process, one model, a queue in front of it.

Defaults keep a fresh install private: the server binds 127.0.0.1, makes no
public share link, caps uploads and queue length, and runs at most
``concurrency`` answers at once (every session and the ``ask`` API endpoint share
that limit).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from geoassist.app.engine import Engine, Limits

logger = logging.getLogger(__name__)

READY_LINE = "GeoAssist is serving"


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


@contextmanager
def _patient_self_check():
    """Give Gradio's start-up check that its own page is reachable more time.

    ``launch()`` sends one HEAD request to its own page with a 3 s timeout and, on a timeout,
    refuses to start ("localhost is not accessible"). The first render of the page can take
    longer than that on a busy machine, so the check is retried here for up to a minute.
    """
    import httpx
    from gradio import networking

    original = networking.url_ok

    def url_ok(url: str) -> bool:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.head(url, timeout=15, verify=False)
                if response.status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
            except (httpx.TimeoutException, httpx.ConnectError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    networking.url_ok = url_ok
    try:
        yield
    finally:
        networking.url_ok = original


def serve(options: ServeOptions, *, block: bool = True):
    """Load the model, build the app and serve it; returns ``(demo, local_url)`` when not blocking."""
    import gradio as gr

    from geoassist.app.ui import CSS

    demo, engine = build(options)
    logger.info("model %s loaded in %.1f s on %s", engine.model_name, engine.load_s, engine.device)
    with _patient_self_check():
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
    print(f"{READY_LINE} {engine.model_name} at {url} (Ctrl-C stops it)", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AppProcess:
    """``geoassist serve ARGS…`` in a child process on a free loopback port, until it answers.

    >>> with AppProcess("--model", "tiny") as app:   # doctest: +SKIP
    ...     Client(app.url).predict(handle_file("scene.png"), "ships", "detect", api_name="/ask")

    The server's output goes to ``log_path`` (a temporary file by default), whose tail is
    shown when the server fails to start.
    """

    def __init__(
        self,
        *args: str,
        log_path: str | os.PathLike | None = None,
        startup_timeout_s: float = 300.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [
            sys.executable,
            "-m",
            "geoassist.cli",
            "serve",
            *args,
            "--port",
            str(self.port),
        ]
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def __enter__(self) -> AppProcess:
        import tempfile

        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="geoassist-serve-", suffix=".log")[1])
        start = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        while time.monotonic() - start < self.startup_timeout_s:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"geoassist serve exited at start:\n{self.log_tail()}")
            # Ready once launch() has returned (it prints the line) and the page answers.
            if READY_LINE in self.log_path.read_text(errors="replace"):
                try:
                    with urllib.request.urlopen(self.url, timeout=30) as response:
                        if response.status == 200:
                            self.startup_s = time.monotonic() - start
                            return self
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"geoassist serve did not answer within {self.startup_timeout_s:g} s:\n{self.log_tail()}"
        )

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
