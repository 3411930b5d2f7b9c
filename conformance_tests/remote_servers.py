"""Servers the remote-reading tests start on 127.0.0.1: an HTTP server with byte ranges over a folder (it counts
the requests and bytes it serves), an S3 endpoint (moto's server) and a Google Cloud Storage endpoint
(gcp-storage-emulator)."""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
# gcsfs asks each bucket's type over gRPC first unless this is off when it is imported, and an emulator serves no
# gRPC (60 s timeouts per call): set before any test imports gcsfs
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


class RangeServer:
    """An HTTP server of ``folder`` (HEAD with Content-Length; GET with one ``Range: bytes=a-b``, answered 206, or
    with ``ranges=False`` the whole file, 200), on 127.0.0.1 and a free port, in a thread; ``requests`` and
    ``bytes_sent`` count GETs and their bytes."""

    def __init__(self, folder: Path, *, ranges: bool = True) -> None:
        self.folder = folder
        self.requests = 0
        self.bytes_sent = 0
        self.paths: Counter[str] = Counter()  # GETs per URL path
        self._lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                path = Path(self.translate_path(self.path))
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                match = _RANGE.match(self.headers.get("Range", "")) if ranges else None
                status = 200
                if match:
                    start = int(match.group(1))
                    end = int(match.group(2)) + 1 if match.group(2) else len(data)
                    data, status = data[start:min(end, len(data))], 206
                with server._lock:
                    server.requests += 1
                    server.bytes_sent += len(data)
                    server.paths[self.path] += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.bytes_sent = 0
            self.paths.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _BucketServer:
    """An object store's emulator in this process: ``fs()`` is a client of it, ``scheme`` its URL scheme."""

    scheme = ""
    bucket = ""
    _server: Any

    def fs(self) -> Any:
        raise NotImplementedError

    def upload(self, folder: Path, prefix: str) -> str:
        """Copy a local dataset folder to <scheme>://bucket/prefix; returns that URL."""
        fs = self.fs()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                fs.pipe_file(f"{self.bucket}/{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())
        return f"{self.scheme}://{self.bucket}/{prefix}"

    def close(self) -> None:
        self._server.stop()


class S3Server(_BucketServer):
    """moto's S3 endpoint on 127.0.0.1 and a free port, with a bucket; ``options`` are s3fs's storage options."""

    scheme = "s3"

    def __init__(self, bucket: str = "atlas") -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.bucket = bucket
        self.options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.endpoint,
                                                                              "region_name": "us-east-1"}}
        self.fs().call_s3("create_bucket", Bucket=bucket)

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)


class GcsServer(_BucketServer):
    """gcp-storage-emulator's GCS endpoint on 127.0.0.1 and a free port, in memory, with a bucket; ``options`` are
    gcsfs's storage options."""

    scheme = "gs"

    def __init__(self, bucket: str = "atlas") -> None:
        from gcp_storage_emulator.server import create_server

        self._server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self._server._api._httpd.server_address[1]}"
        self.bucket = bucket
        self.options = {"endpoint_url": self.endpoint, "token": "anon"}

    def fs(self) -> Any:
        import gcsfs

        return gcsfs.GCSFileSystem(skip_instance_cache=True, **self.options)


def ids_of(items: list[dict[str, Any]]) -> list[int]:
    """A DataLoader collate function (importable, so spawned workers find it): the batch's example ids."""
    return [x["i"] for x in items]
