#!/usr/bin/env python3
"""Serve a folder of wheels as a package index (PEP 503, "simple" API) on loopback.

    python scripts/serve-wheels.py WHEELHOUSE [--port PORT]

The image build points pip at ``http://127.0.0.1:PORT/simple/`` (``docker build --network host``),
so that every package the Dockerfile installs comes from this machine and none from the internet.
``/simple/`` lists the projects, ``/simple/<project>/`` links each file of a project with its
SHA-256 (pip checks it), ``/files/<file>`` serves the file. Only the files found in WHEELHOUSE at
start are served. One line on stdout says where the index answers, once it does; every request is
logged on stderr (a 404 there names a package the wheelhouse lacks). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import re
import signal
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

HOST = "127.0.0.1"  # loopback only: the index is for builds on this machine
DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz", ".zip")
CHUNK_BYTES = 1 << 20  # 1 MiB per write: torch's wheel is ~200 MB and is never read whole into memory


@dataclass(frozen=True)
class IndexedFile:
    """One distribution file the index serves."""

    path: Path
    """Where it lies in the wheelhouse."""
    sha256: str
    """Hex digest, published in the link's fragment so that pip verifies the download."""


def normalized(name: str) -> str:
    """A project name as PEP 503 compares it: runs of ``-``, ``_`` and ``.`` are one ``-``, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str | None:
    """The normalized project name of a wheel or sdist file name, or None for any other file."""
    if filename.endswith(".whl"):
        return normalized(filename.split("-", 1)[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix) and "-" in filename:
            return normalized(filename[: -len(suffix)].rsplit("-", 1)[0])
    return None


def build_index(wheelhouse: Path) -> dict[str, dict[str, IndexedFile]]:
    """Project name → file name → file, for every distribution file directly in ``wheelhouse``."""
    index: dict[str, dict[str, IndexedFile]] = {}
    for path in sorted(wheelhouse.iterdir()):
        project = project_of(path.name) if path.is_file() else None
        if project is None:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                digest.update(chunk)
        index.setdefault(project, {})[path.name] = IndexedFile(path, digest.hexdigest())
    return index


def page(title: str, links: list[tuple[str, str]]) -> bytes:
    """A PEP 503 page: one anchor per (href, text)."""
    anchors = "\n".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br>' for href, text in links)
    return (f"<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.0\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n{anchors}\n</body></html>\n").encode()


def make_handler(index: dict[str, dict[str, IndexedFile]]) -> type[BaseHTTPRequestHandler]:
    files = {name: entry for project in index.values() for name, entry in project.items()}

    class IndexHandler(BaseHTTPRequestHandler):
        server_version = "mfrm-wheel-index"

        def do_GET(self) -> None:  # the name http.server calls
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            parts = [unquote(part) for part in urlsplit(self.path).path.split("/") if part]
            if parts == ["simple"]:
                links = [(f"/simple/{project}/", project) for project in sorted(index)]
                self._send_page(page("Simple index", links), send_body)
            elif len(parts) == 2 and parts[0] == "simple" and normalized(parts[1]) in index:
                project = index[normalized(parts[1])]
                links = [(f"/files/{quote(name)}#sha256={entry.sha256}", name) for name, entry in sorted(project.items())]
                self._send_page(page(f"Links for {parts[1]}", links), send_body)
            elif len(parts) == 2 and parts[0] == "files" and parts[1] in files:
                self._send_file(files[parts[1]].path, send_body)
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "not in this wheelhouse")

        def _send_page(self, body: bytes, send_body: bool) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _send_file(self, path: Path, send_body: bool) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            if not send_body:
                return
            with path.open("rb") as stream:
                for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:  # http.server's signature
            sys.stderr.write(f"serve-wheels: {self.address_string()} {format % args}\n")

    return IndexHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheelhouse", type=Path, help="folder of .whl (and sdist) files")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    if not args.wheelhouse.is_dir():
        print(f"serve-wheels: error: {args.wheelhouse} is not a folder", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"serve-wheels: error: --port {args.port} is outside 0..65535", file=sys.stderr)
        return 2
    index = build_index(args.wheelhouse)
    if not index:
        print(f"serve-wheels: error: {args.wheelhouse} holds no .whl, .tar.gz or .zip file", file=sys.stderr)
        return 2
    try:
        server = ThreadingHTTPServer((HOST, args.port), make_handler(index))
    except OSError as error:
        print(f"serve-wheels: error: cannot listen on {HOST}:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    server.daemon_threads = True
    # The signal handler runs on the main thread, which is inside serve_forever: shutdown() waits for
    # that loop to end, so it is called from another thread.
    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    count = sum(len(project) for project in index.values())
    print(f"serve-wheels: {count} files of {len(index)} projects from {args.wheelhouse} at "
          f"http://{HOST}:{server.server_address[1]}/simple/", flush=True)
    with server:
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
