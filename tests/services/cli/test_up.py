"""`imgsearch up` on an empty data folder: builds a (small) demo index, starts the four services, answers a
real photo with 10 results per item, and stops every child on SIGTERM. `imgsearch search` is its client."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from services.stack import free_port
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

PHOTO = DATA / "photos" / "person.jpg"


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        out.put(raw.decode(errors="replace"))


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_up_builds_the_demo_index_serves_search_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port), "--data", str(data), "--demo-limit", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    errors: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, errors), daemon=True).start()
    try:
        seen: list[str] = []

        def banner_printed() -> bool:
            assert proc.poll() is None, "".join(errors.queue)
            while not out.empty():
                seen.append(out.get())
            return "curl" in "".join(seen)

        wait_until(banner_printed, 150, message=lambda: "".join(seen) + "".join(errors.queue))
        printed = "".join(seen)
        url = f"http://127.0.0.1:{port}"
        assert url in printed and f"curl -F image=@{PHOTO} '{url}/v1/search?k=10'" in printed
        assert (data / "index" / "CURRENT").is_file()

        resp = httpx.post(url + "/v1/search?k=10", files={"image": PHOTO.open("rb")}, timeout=30, trust_env=False)
        assert resp.status_code == 200, resp.text
        assert resp.json()["items"] and all(len(i["results"]) == 10 for i in resp.json()["items"])

        search_cli = [sys.executable, "-m", "services.cli", "search", str(PHOTO), "--url", url]
        cli = subprocess.run([*search_cli, "--k", "3", "--json"], capture_output=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert all(len(i["results"]) == 3 for i in json.loads(cli.stdout)["items"])
        table = subprocess.run(search_cli, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert 3 < len(lines) <= 40 and lines[0].startswith(f"{len(resp.json()['items'])} item(s), index "), lines
        assert lines[2].split()[0] == "1" and lines[2].split()[2].startswith("fmnist-"), lines  # rank, score, id

        logged = "".join(errors.queue)
        ports = [int(p) for p in re.findall(r"ready on http://127\.0\.0\.1:(\d+)", logged)]
        assert len(ports) == 4 and port in ports, logged
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert all(_refuses(p) for p in ports)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
