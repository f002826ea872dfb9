"""Start-up time of the operator's commands, run by hand: ``.venv/bin/python bench/cli_startup.py``.

Seeds a small data directory (SQLite: 5 tenants, their keys and a support key, and a few sent
envelopes made through the HTTP API of a real ``esign-gateway serve``), then runs each command
``--runs`` times as a fresh process and prints the wall time of every run and the median:

    esign-gateway tenant list
    esign-gateway key list
    esign-gateway audit verify --all

It prints the CPU time (user + system) of each process too: on a shared machine the wall time
follows the load, the CPU time much less.

``--source DIR`` runs the commands from another checkout of the code (e.g. ``git archive`` of an
older commit unpacked into DIR) on the same data, for a comparison on the same machine and minute.
``--data-dir`` reuses a data directory seeded before (or your own, e.g. ``make run``'s ``data``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMANDS = (("tenant", "list"), ("key", "list"), ("audit", "verify", "--all"))


def _env(data_dir: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIGN_")}
    return {**env, "ESIGN_DATA_DIR": str(data_dir), "ESIGN_ENV": "dev", "ESIGN_LOG_LEVEL": "WARNING",
            "ESIGN_LOG_JSON": "false", **more}


def _cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> str:
    return subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=env, cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=300).stdout


def _request(url: str, *, body: dict[str, object] | None = None, key: str | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"{}")


def seed(data_dir: Path, *, tenants: int, envelopes: int) -> None:
    from tests.factories import make_pdf

    env = _env(data_dir)
    _cli(env, "migrate")
    keys = [json.loads(_cli(env, "tenant", "create", "--name", f"Bench {i} s.r.o.", "--paid", "--plan", "l",
                            "--json"))["api_key"] for i in range(tenants)]
    _cli(env, "key", "create", "--role", "support")
    port = 18500 + os.getpid() % 400
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "esign_gateway", "serve", "--port", str(port)],
                              env=_env(data_dir, ESIGN_PUBLIC_URL=base), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                _request(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        pdf = base64.b64encode(make_pdf(pages=1)).decode()
        for i in range(envelopes):
            _request(f"{base}/v1/envelopes", key=keys[i % len(keys)], body={
                "record": {"type": "deal", "id": f"D-{i}"}, "name": f"Smlouva {i}",
                "documents": [{"name": "smlouva.pdf", "content": pdf}],
                "signers": [{"name": "Jana Nováková", "email": f"jana{i}@example.cz", "phone": "+420601123456"}],
            })
    finally:
        server.terminate()
        server.wait(timeout=60)


def timed(data_dir: Path, source: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run as a fresh process."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    _cli(_env(data_dir), *args, cwd=source)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--envelopes", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, help="use this data directory as it is (no seeding)")
    parser.add_argument("--source", type=Path, default=ROOT, help="run the commands from this checkout")
    opts = parser.parse_args()

    data_dir = opts.data_dir
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="esign-cli-bench-"))
        seed(data_dir, tenants=opts.tenants, envelopes=opts.envelopes)
    source = opts.source.resolve()
    print(f"data {data_dir}, code from {source}, {opts.runs} runs each; load average {os.getloadavg()[0]:.2f}")
    timed(data_dir, source, COMMANDS[0])  # warm the file cache and the byte-code
    for args in COMMANDS:
        name = f"esign-gateway {' '.join(args)}"
        try:
            runs = [timed(data_dir, source, args) for _ in range(opts.runs)]
        except subprocess.CalledProcessError as exc:
            print(f"  {name:36}  fails here (exit {exc.returncode})")
            continue
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"  {name:36}  wall median {statistics.median(walls):.2f} s ({' '.join(f'{w:.2f}' for w in walls)})"
              f"   CPU median {statistics.median(cpus):.2f} s")


if __name__ == "__main__":
    main()
