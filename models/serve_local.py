"""llama-cpp-python's OpenAI-compatible server on loopback, serving the tiny random-weight pair.

For benchmarks and tests of the ``openai`` backend without a GPU or a download: the same
command line as the tests' ``llama_server`` fixture. Its ``mtmd`` chat handler cannot give
Phi-4-RV's own chat template an image, so the server loads a copy of the tiny text GGUF with
:func:`models.serving.serving_template` stamped in (docs/scaling.md does the same for the real
model).

``python -m llama_cpp.server`` has no parallel slots: it answers one request at a time (one
lock around the model), so sessions sharing it queue for the model while their other work
(screenshots, OCR, waiting for windows) overlaps. ``llama-server --parallel N`` decodes several
requests at once.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVED_NAME = "deskpilot-tiny"
PARALLEL_SLOTS = 1  # llama_cpp.server serialises requests; see the module docstring


class ServerError(RuntimeError):
    """The local server could not be prepared or did not come up."""


@dataclass(frozen=True, slots=True)
class LocalServer:
    """A running server: its API root, the model name it serves, and its log file."""

    base_url: str
    model: str
    log: Path


def serving_copy(directory: Path) -> tuple[Path, Path]:
    """The tiny pair made servable: ``(text GGUF with the serving template, mmproj)``."""
    from deskpilot.models.serving import serving_template
    from deskpilot.models.tiny import CHAT_TEMPLATE, ensure_tiny_pair

    pair = ensure_tiny_pair()
    directory.mkdir(parents=True, exist_ok=True)
    template, model = directory / "serving.jinja", directory / "model.gguf"
    template.write_text(serving_template(CHAT_TEMPLATE), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "from gguf.scripts.gguf_new_metadata import main; main()",
         str(pair.model), str(model), "--chat-template-file", str(template), "--force"],
        capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise ServerError(f"could not stamp the serving template: {done.stderr[-500:]}")
    return model, pair.mmproj


def server_command(model: Path, mmproj: Path, *, port: int, alias: str = SERVED_NAME,
                   n_ctx: int = 8192, verbose: bool = False) -> list[str]:
    """The ``python -m llama_cpp.server`` command line for a servable pair on loopback.

    ``verbose`` makes the server log each prompt as rendered (the tests read it back).
    """
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--clip_model_path", str(mmproj), "--chat_format", "mtmd", "--model_alias", alias,
            "--n_ctx", str(n_ctx), "--host", "127.0.0.1", "--port", str(port),
            # By default a streamed reply is cut off as soon as another request waits; with
            # several sessions sharing the server, each must get its whole reply.
            "--interrupt_requests", "False", *(["--verbose", "True"] if verbose else [])]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_server(directory: Path, *, timeout_s: float = 120.0, verbose: bool = False
                 ) -> Iterator[LocalServer]:
    """Start the server with the tiny pair (files and log under ``directory``); stop it after."""
    model, mmproj = serving_copy(directory)
    port = free_port()
    server = LocalServer(f"http://127.0.0.1:{port}/v1", SERVED_NAME, directory / "server.log")
    with server.log.open("wb") as out:
        proc = subprocess.Popen(server_command(model, mmproj, port=port, verbose=verbose),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while not answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = server.log.read_text(errors="replace")[-1500:]
                raise ServerError(f"llama_cpp.server did not come up on port {port}:\n{tail}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answers(port: int) -> bool:
    """Whether ``GET /v1/models`` answers 200 on loopback (http.client: no proxy is used)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/v1/models")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()
