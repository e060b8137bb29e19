"""CPU time per sample and peak RSS of `hoststream collect`, side by side with collectd.

Not a test: it prints figures. Both run at the same interval for the same time,
after a warm-up, on this machine at once; the collector publishes to a Kafka
broker of its own (started here on free ports, stopped at the end), collectd
writes CSV files with the cpu, memory, df, disk, interface and load plugins.
CPU time is the time on CPU of the process's threads (/proc/<pid>/task/*/schedstat,
in nanoseconds: /proc/<pid>/stat counts 10 ms ticks, a tenth of a 40 s run's
figure) between the end of the warm-up and the end of the run, divided by the
samples taken in between; peak RSS is VmHWM from /proc/<pid>/status, which
counts from the collector's exec into its own process (collector/main.py).

    .venv/bin/python scripts/bench_collector.py [--duration 120] [--interval 1]
        [--python PATH]

``--python`` runs the ``hoststream`` installed beside another interpreter, such as
a collector-only install (``python -m venv /tmp/lean && /tmp/lean/bin/pip install .``):
this repository's .venv holds the worker's extras too, and aiokafka imports
cramjam, 1.6 MB, wherever it is installed.

Run as root to have collectd installed (`apt-get install collectd-core`) when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack import Stack  # noqa: E402

# Free ports and a stack_dir of its own, as the tests use.
from stack.throwaway import throwaway_settings  # noqa: E402

COLLECTD_CONF = """\
Interval {interval}
BaseDir "{base}"
PIDFile "{base}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
FQDNLookup false
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin load
LoadPlugin csv
<Plugin cpu>
  ReportByCpu true
  ValuesPercentage true
</Plugin>
<Plugin csv>
  DataDir "{base}/csv"
  StoreRates true
</Plugin>
"""


def collectd_binary() -> str:
    """collectd's path, installing Debian's collectd-core first when missing and root."""
    found = shutil.which("collectd") or shutil.which("collectd", path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("collectd is missing: sudo apt-get install -y collectd-core, then run again")
    print("installing collectd-core with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "collectd-core"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("collectd", path="/usr/sbin:/sbin") or "/usr/sbin/collectd"


def cpu_seconds(pid: int) -> float:
    """Time on CPU of a process's threads, seconds (threads that ended are not counted:
    neither collector ends one while it runs)."""
    return (
        sum(
            int((task / "schedstat").read_text().split()[0])
            for task in Path(f"/proc/{pid}/task").iterdir()
        )
        / 1e9
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=120.0, help="measured seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        help="interpreter whose hoststream runs (default: this one)",
    )
    args = parser.parse_args()

    collectd = collectd_binary()
    work = Path(tempfile.mkdtemp(prefix="hoststream-bench-"))
    settings = throwaway_settings(work / "stack", REPO / ".hoststream" / "kafka-libs")
    stack = Stack(settings, echo=lambda line: None)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print(f"starting a Kafka broker for the collector on {settings.kafka_bootstrap} ...")
        stack.install()
        stack.up(["kafka"])
        conf = work / "collectd.conf"
        conf.write_text(COLLECTD_CONF.format(interval=args.interval, base=work / "collectd"))
        (work / "collectd").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTSTREAM_")}
        env |= {
            "HOSTSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "HOSTSTREAM_COLLECTOR_DIR": str(work / "collector"),
            "HOSTSTREAM_INTERVAL_S": str(args.interval),
        }
        with (work / "collector.log").open("wb") as log:
            ours = subprocess.Popen(
                [args.python.absolute().parent / "hoststream", "collect"],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        theirs = subprocess.Popen(
            [collectd, "-f", "-C", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes += [ours, theirs]
        print(f"warming up {args.warmup:g} s, then measuring {args.duration:g} s ...", flush=True)
        time.sleep(args.warmup)
        for process in processes:
            if process.poll() is not None:
                sys.exit(f"{process.args[0]} exited early; see {work}")
        start = {p.pid: cpu_seconds(p.pid) for p in processes}
        started = time.monotonic()
        time.sleep(args.duration)
        elapsed = time.monotonic() - started
        samples = elapsed / args.interval
        rows = []
        for name, process in (("hoststream collect", ours), ("collectd", theirs)):
            used = cpu_seconds(process.pid) - start[process.pid]
            rows.append((name, used / samples * 1000, peak_rss_mb(process.pid), start[process.pid]))
        print(f"\n{samples:.0f} samples at {args.interval:g} s, measured after a warm-up")
        print(f"{'':20} {'CPU ms/sample':>14} {'peak RSS MB':>12} {'start-up CPU s':>15}")
        for name, per_sample, rss, startup in rows:
            print(f"{name:20} {per_sample:14.2f} {rss:12.1f} {startup:15.2f}")
        ratio = rows[0][1] / rows[1][1]
        print(f"\nhoststream / collectd CPU per sample: {ratio:.2f} (target <= 0.5); ", end="")
        print(f"hoststream peak RSS {rows[0][2]:.1f} MB (target <= 25)")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
