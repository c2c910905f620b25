"""download_mnist against a local HTTP server on 127.0.0.1 (never the network).

The server serves a temporary copy of ``shared/data/mnist`` under several mirror prefixes::

    /good/NAME        the canonical file
    /corrupt/NAME     t10k-images with one byte changed, the other files intact
    /truncated/NAME   t10k-images cut in half (the full Content-Length is announced, then the
                      connection closes), the other files intact
    /missing/NAME     404 for everything
    /slow/NAME        sleeps longer than the client's timeout
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from numpy_mnist.cli import main
from numpy_mnist.data import download_mnist, mnist, verify_mnist
from numpy_mnist.errors import ChecksumError, DataError

NAMES = list(mnist.MNIST_FILES)
BROKEN = "t10k-images-idx3-ubyte.gz"  # the third file: two good files come before it


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 -- the http.server API
        self.requests.append(self.path)
        _, mirror, name = self.path.split("/", 2)
        data = self.files.get(name)
        if mirror == "slow":
            time.sleep(2)
        if mirror not in ("good", "corrupt", "truncated", "slow") or data is None:
            self.send_error(404, "Not Found")
            return
        body = data
        if name == BROKEN and mirror == "corrupt":
            body = bytearray(data)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name == BROKEN and mirror == "truncated":
            body = data[: len(data) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """Clients here hang up on purpose (time-outs, truncations): that is no error worth a trace.

    The default ``handle_error`` prints a traceback to stderr from the server thread, which would
    land in whichever test's captured output happens to be running at the time.
    """

    daemon_threads = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    """Base URL of a local server serving a temporary copy of shared/data/mnist."""
    served = tmp_path_factory.mktemp("served")
    for name in NAMES:
        shutil.copyfile(shared_data / "mnist" / name, served / name)
    MirrorHandler.files = {name: (served / name).read_bytes() for name in NAMES}
    httpd = QuietServer(("127.0.0.1", 0), MirrorHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def requests(server):
    MirrorHandler.requests = []
    return MirrorHandler.requests


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def listing(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_download_all_four(server, tmp_path, requests):
    root = tmp_path / "cache" / "numpy-mnist"
    assert download_mnist(root, mirrors=[f"{server}/good/"], progress=False) == root
    assert listing(root) == set(NAMES)
    for name, sums in mnist.MNIST_FILES.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == sums.sha256
    assert verify_mnist(root) == dict.fromkeys(NAMES, "ok")
    assert requests == [f"/good/{name}" for name in NAMES]


def test_files_present_and_valid_are_not_fetched_again(server, tmp_path, requests):
    download_mnist(tmp_path, mirrors=[f"{server}/good"], progress=False)  # no trailing slash
    requests.clear()
    download_mnist(tmp_path, mirrors=[f"{server}/missing/"], progress=False)
    assert requests == []


def test_a_damaged_file_in_the_folder_is_replaced(server, shared_data, tmp_path, requests):
    shutil.copyfile(shared_data / "mnist" / NAMES[0], tmp_path / NAMES[0])
    (tmp_path / NAMES[1]).write_bytes(b"not the labels")
    download_mnist(tmp_path, mirrors=[f"{server}/good/"], progress=False)
    assert requests == [f"/good/{name}" for name in NAMES[1:]]
    assert verify_mnist(tmp_path) == dict.fromkeys(NAMES, "ok")


def test_corrupted_file_raises_checksum_error_and_leaves_only_good_files(server, tmp_path):
    with pytest.raises(ChecksumError) as info:
        download_mnist(tmp_path, mirrors=[f"{server}/corrupt/"], progress=False)
    message = str(info.value)
    assert BROKEN in message and "checksum mismatch" in message
    assert listing(tmp_path) == {NAMES[0], NAMES[1]}  # no BROKEN, no temporary file
    assert verify_mnist(tmp_path)[NAMES[0]] == verify_mnist(tmp_path)[NAMES[1]] == "ok"


def test_truncated_transfer_raises_data_error_and_leaves_nothing_half_written(server, tmp_path):
    with pytest.raises(DataError) as info:
        download_mnist(tmp_path, mirrors=[f"{server}/truncated/"], progress=False)
    assert not isinstance(info.value, ChecksumError)
    message = str(info.value)
    assert BROKEN in message and "truncated" in message
    assert listing(tmp_path) == {NAMES[0], NAMES[1]}


def test_a_404_on_the_first_mirror_falls_through_to_the_next(server, tmp_path, requests):
    download_mnist(tmp_path, mirrors=[f"{server}/missing/", f"{server}/good/"], progress=False)
    assert verify_mnist(tmp_path) == dict.fromkeys(NAMES, "ok")
    assert requests[:2] == [f"/missing/{NAMES[0]}", f"/good/{NAMES[0]}"]


def test_a_bad_mirror_falls_through_to_the_next(server, tmp_path):
    download_mnist(tmp_path, mirrors=[closed_port_url(), f"{server}/corrupt/", f"{server}/good/"],
                   progress=False)
    assert verify_mnist(tmp_path) == dict.fromkeys(NAMES, "ok")
    assert listing(tmp_path) == set(NAMES)


def test_every_mirror_failing_names_the_file_and_each_problem(server, tmp_path):
    refused = closed_port_url()
    with pytest.raises(DataError) as info:
        download_mnist(tmp_path, mirrors=[f"{server}/missing/", refused], progress=False)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert message.startswith(f"{NAMES[0]}: could not be downloaded from any mirror")
    assert "HTTP 404" in message and refused in message
    assert listing(tmp_path) == set()


def test_a_stalled_server_times_out(server, tmp_path):
    with pytest.raises(DataError, match="timed out"):
        download_mnist(tmp_path, mirrors=[f"{server}/slow/"], progress=False, timeout=0.3)
    assert listing(tmp_path) == set()


def test_no_mirror_and_an_unusable_url(tmp_path):
    with pytest.raises(DataError, match="no mirror"):
        download_mnist(tmp_path, mirrors=[], progress=False)
    with pytest.raises(DataError, match="not a usable URL|unknown url type"):
        download_mnist(tmp_path, mirrors=["no-scheme/"], progress=False)
    assert listing(tmp_path) == set()


def test_an_unwritable_folder_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot create the data folder"):
        download_mnist(tmp_path / "file" / "sub", mirrors=[closed_port_url()], progress=False)


def test_progress_bar_names_the_file(server, tmp_path, capsys):
    download_mnist(tmp_path, mirrors=[f"{server}/good/"], progress=True)
    assert NAMES[0] in capsys.readouterr().err


def test_default_mirrors_are_torchvisions_and_overridable(server, tmp_path, monkeypatch):
    assert mnist.MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    monkeypatch.setattr(mnist, "MIRRORS", (f"{server}/good/",))
    monkeypatch.setenv("NUMPY_MNIST_DATA", str(tmp_path / "env"))
    assert download_mnist(progress=False) == tmp_path / "env"
    assert listing(tmp_path / "env") == set(NAMES)


def test_cli_download_and_verify(server, tmp_path, capsys):
    assert main(["data", "download", "--root", str(tmp_path), "--mirror", f"{server}/missing/",
                 "--mirror", f"{server}/good/", "--quiet"]) == 0
    assert capsys.readouterr().out.count("ok ") == 4
    assert main(["data", "verify", "--root", str(tmp_path)]) == 0


def test_cli_download_failure_is_one_line(server, tmp_path, capsys):
    assert main(["data", "download", "--root", str(tmp_path), "--mirror", f"{server}/corrupt/", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("numpy-mnist data: error:") and "\n" not in error and BROKEN in error
