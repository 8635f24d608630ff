"""A py-spy profile of the gateway's stream path: where its CPU goes, by function.

    .venv/bin/python bench/profile_gateway.py                    # 50-chunk streams back to back
    .venv/bin/python bench/profile_gateway.py --load paced       # 50 chunks 20 ms apart
    .venv/bin/python bench/profile_gateway.py --repo /tmp/pb-base --top 30

Starts the fake OpenAI upstream and a gateway (``--repo``: which checkout, default this one) as in
gateway_bench, warms it, then runs ``py-spy record --format raw`` on the gateway process while the
client sends streams at concurrency 1, and prints the share of samples per function: "self"
(the frame on top of the stack) and "total" (anywhere on the stack). Needs ``pip install py-spy``
and the right to trace the process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gateway_bench import Gateway, Upstream, _run_load, anthropic_request  # noqa: E402


def summarise(raw: Path, top: int) -> str:
    """Collapsed stacks (``frame;frame;frame count``) to the top functions by self and total share."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            anywhere[f] += n
    lines = [f"{total} samples", f"{'self %':>7} {'total %':>8}  function (file)"]
    for f, n in own.most_common(top):
        lines.append(f"{100 * n / total:7.1f} {100 * anywhere[f] / total:8.1f}  {f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="py-spy profile of the gateway's stream path.")
    ap.add_argument("--repo", type=Path, default=REPO, help="the Patchbay checkout to run")
    ap.add_argument("--load", choices=("stream", "paced"), default="stream")
    ap.add_argument("--n", type=int, help="requests to profile (default 1500 stream, 40 paced)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (Python CPU)")
    ap.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this file")
    args = ap.parse_args(argv)
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    import uvloop

    n = args.n or (1500 if args.load == "stream" else 40)
    up = Upstream("openai")
    up.phase(args.load)
    with tempfile.TemporaryDirectory(prefix="patchbay-prof-") as tmp:
        raw = args.raw or Path(tmp) / "stacks.txt"
        gw = Gateway("openai", up.port, Path(tmp), repo=args.repo.resolve())
        try:
            req = anthropic_request(gw.port, True, "bench-token")
            uvloop.run(_run_load(gw.port, req, 20, 1, b"message_stop", 5))
            spy = subprocess.Popen([spy_bin, "record", "--pid", str(gw.proc.pid), "--format", "raw", "-r", "500", *(["--gil"] if args.gil else []),
                                    "-o", str(raw), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            s = uvloop.run(_run_load(gw.port, req, n, 1, b"message_stop", 2, probe=gw.cpu_s))
            spy.send_signal(2)
            spy.wait(30)
        finally:
            gw.stop()
            up.stop()
        print(f"{args.repo}: {args.load}, {n} requests, CPU {s.cpu_s / n * 1000:.2f} ms a request, "
              f"{s.errors} errors")
        print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
