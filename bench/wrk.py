"""The closed-loop load of bench/load.py through wrk, a load generator written in C.

bench/load.py's own client is Python on the same two cores as the service: at a few thousand
requests a second it takes most of a core, and the service and the ceiling are measured with
what is left. wrk (``apt-get install wrk``) costs a fraction of that, as an independent check
with wrk would. Every request is still a different update: the bodies are made first, one per
line of a file, and each of wrk's threads takes its own share of the lines; a thread that runs
out starts again at its first (the service then takes repeats as duplicates), and the report
says so. wrk runs for a fixed time, so the run's size is what wrk sent in that time.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

# Each thread reads its own lines (thread k of n: lines k, k+n, …) into ready requests.
LUA = r"""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, secret, n = args[1], args[2], tonumber(args[3])
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Telegram-Bot-Api-Secret-Token"] = secret
  requests = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % n == id then
      table.insert(requests, wrk.format("POST", nil, headers, line))
    end
    line_no = line_no + 1
  end
  next_one = 0
  wrapped = 0
end

function request()
  next_one = next_one + 1
  if next_one > #requests then
    next_one = 1
    wrapped = wrapped + 1
  end
  return requests[next_one]
end

function done(summary, latency, requests)
  local repeats = 0
  for _, thread in ipairs(threads) do
    repeats = repeats + thread:get("wrapped")
  end
  io.write(string.format("wrk-summary %d %d %d %d %d\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration, repeats))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("wrk-latency %g %d\n", p, latency:percentile(p)))
  end
end
"""


class WrkRun:
    """What one wrk run answered."""

    def __init__(self, output: str) -> None:
        summary = re.search(r"^wrk-summary (\d+) (\d+) (\d+) (\d+) (\d+)", output, re.M)
        if summary is None:
            raise SystemExit(f"wrk printed no summary:\n{output}")
        self.requests, self.not_ok, self.errors, duration_us, self.repeats = map(
            int, summary.groups()
        )
        self.seconds = duration_us / 1e6
        self.latency_s = {
            float(p) / 100: int(us) / 1e6
            for p, us in re.findall(r"^wrk-latency (\S+) (\d+)", output, re.M)
        }


def available() -> bool:
    """Whether wrk is installed."""
    return shutil.which("wrk") is not None


async def run(
    url: str,
    secret: str,
    bodies: Sequence[bytes],
    *,
    seconds: float,
    connections: int,
    threads: int,
    workdir: Path,
) -> WrkRun:
    """POST ``bodies`` (each thread its share, in turn) for ``seconds`` over ``connections``
    connections."""
    lines = workdir / f"bodies-{len(bodies)}.jsonl"
    with lines.open("wb") as out:
        for body in bodies:
            if b"\n" in body:
                raise ValueError("an update body must fit on one line")
            out.write(body + b"\n")
    script = workdir / "updates.lua"
    script.write_text(LUA, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
        "--",
        str(lines),
        secret,
        str(threads),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return WrkRun(output.decode(errors="replace"))
