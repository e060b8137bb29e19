"""The sampler on this host: a complete record, valid, exact through JSON, units right;
and a collector whose delivery dies stops at once, with one line."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import orjson
import psutil
import pytest

from collector.gpu import NvidiaGpus
from collector.identity import default_host_id
from collector.procfs import ProcFiles
from collector.run import CollectorDied, collect
from collector.sampler import (
    FIRST_CPU_SPAN_S,
    Sampler,
    battery_of,
    cpu_times_split,
    cpu_utilisation,
    fans_of,
    temperatures_of,
)
from collector.spool import Spool
from config import CollectorSettings, load
from config.collector import parse_tags
from schemas.metrics import to_json
from schemas.validation import RejectedRecord, parse_sample
from tests.unit.samples import sample_document


@pytest.fixture(scope="module")
def two_samples():
    sampler = Sampler("host-1", 1.0, [("env", "prod"), ("team", "db")])
    first = sampler.sample()
    time.sleep(0.2)
    second = sampler.sample(status=(3, 0))
    return first, second


def test_a_sample_passes_the_workers_validation_and_round_trips_exactly(two_samples):
    # The sampler builds plain dicts: the model decoding them and encoding them back to
    # the same bytes shows the same fields, in the same order, with the same types.
    for sample in two_samples:
        raw = to_json(sample)
        assert orjson.loads(raw) == sample
        assert to_json(parse_sample(raw)) == raw


def test_a_sample_has_every_metric_family_this_host_has(two_samples):
    document = two_samples[1]
    cpu = document["cpu"]
    assert {"user_percent", "system_percent", "idle_percent"} <= cpu["times"].keys()
    assert set(cpu["load"]) == {"load_1m", "load_5m", "load_15m"}
    assert {"ctx_switches_per_s", "interrupts_per_s", "soft_interrupts_per_s"} <= set(
        cpu["activity"]
    )
    assert len(cpu["per_core_percent"]) == document["host"]["cpu_cores_logical"]
    assert {"total_bytes", "used_bytes", "percent", "swapped_in_bytes_per_s"} <= set(
        document["memory"]["swap"]
    )
    assert any(disk["mountpoint"] == "/" for disk in document["disks"])
    assert "lo" in {i["interface"] for i in document["network"]["interfaces"]}
    assert document["disk_io"], "this host has block devices"
    assert document["host"]["os"] == "Linux"
    assert document["host"]["uptime_s"] > 0
    assert document["tags"] == [{"key": "env", "value": "prod"}, {"key": "team", "value": "db"}]
    assert document["collector"] == {"spooled_samples": 3, "dropped_samples": 0}
    assert 0.15 < document["elapsed_s"] < 5


def test_groups_the_host_lacks_are_absent_not_zero_or_null(two_samples):
    # The test machine has no GPU, battery or sensors (checked, not assumed).
    import psutil

    document = orjson.loads(to_json(two_samples[1]))
    assert "gpus" not in document
    assert ("battery" in document) == (psutil.sensors_battery() is not None)
    assert ("temperatures" in document) == bool(psutil.sensors_temperatures())
    assert None not in _all_values(document)


def test_the_first_sample_has_no_elapsed_time_and_zero_rates(two_samples):
    document = orjson.loads(to_json(two_samples[0]))
    assert "elapsed_s" not in document
    assert document["network"]["bytes_sent_delta"] == 0
    assert document["network"]["bytes_recv_per_s"] == 0.0
    assert all(d["read_bytes_per_s"] == 0.0 for d in document["disk_io"])


def test_cpu_readings_in_the_same_clock_tick_are_zero_busy_not_100():
    fields = ["user", "nice", "system", "idle", "iowait"]
    reading = [[100, 0, 50, 900, 10], [120, 0, 40, 880, 5]]
    cpu = cpu_utilisation(fields, reading, [list(core) for core in reading])
    # No tick passed: nothing was measured, and no split of it adds up to 100.
    assert cpu == {"percent": 0.0, "per_core_percent": [0.0, 0.0]}


def test_cpu_busy_share_leaves_out_idle_and_iowait():
    fields = ["user", "nice", "system", "idle", "iowait"]
    before = [[100, 0, 50, 900, 10], [120, 0, 40, 880, 5]]
    after = [[110, 0, 60, 975, 15], [120, 0, 40, 980, 5]]  # core 1 idle throughout
    cpu = cpu_utilisation(fields, before, after)
    assert cpu["per_core_percent"] == [20.0, 0.0]
    assert cpu["percent"] == 10.0
    assert cpu["times"] == {
        "user_percent": 5.0,
        "system_percent": 5.0,
        "idle_percent": 87.5,
        "iowait_percent": 2.5,
    }


def test_a_first_sample_taken_at_once_still_measures_the_cpu():
    started = time.monotonic()
    sampler = Sampler("host-1", 1.0)
    cpu = sampler.sample()["cpu"]
    assert time.monotonic() - started >= FIRST_CPU_SPAN_S
    assert abs(sum(cpu["times"].values()) - 100.0) < 1e-6
    assert 0.0 <= cpu["percent"] <= 100.0  # 100 when other processes keep every core busy


def test_cpu_time_split_adds_up_to_100():
    shares = {"user": 10.0, "nice": 5.0, "system": 8.0, "irq": 1.0, "softirq": 1.0}
    shares |= {"idle": 70.0, "iowait": 4.0, "steal": 1.0}
    split = cpu_times_split(shares)
    assert (split["user_percent"], split["system_percent"]) == (15.0, 10.0)
    assert sum(split.values()) == 100.0


def test_cpu_time_split_leaves_iowait_and_steal_absent_where_the_platform_has_none():
    split = cpu_times_split({"user": 20.0, "system": 10.0, "idle": 70.0})
    assert split == {"user_percent": 20.0, "system_percent": 10.0, "idle_percent": 70.0}


sbattery = namedtuple("sbattery", "percent secsleft power_plugged")


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (sbattery(55.0, 3600, False), {"percent": 55.0, "plugged": False, "time_left_s": 3600.0}),
        (sbattery(80.0, -2, True), {"percent": 80.0, "plugged": True}),  # POWER_TIME_UNLIMITED
        (sbattery(80.0, -1, False), {"percent": 80.0, "plugged": False}),  # POWER_TIME_UNKNOWN
        (sbattery(100.4, 10, None), {"percent": 100.0, "time_left_s": 10.0}),
    ],
)
def test_battery_time_left_is_absent_when_unknown_or_plugged_in(state, expected):
    assert battery_of(state) == expected


Reading = namedtuple("Reading", "label current high critical")


def test_temperatures_keep_every_label_and_drop_figures_that_are_not_numbers():
    sensors = {
        "coretemp": [Reading("Package id 0", 48.0, 80.0, 100.0), Reading("", 45.5, None, None)],
        "acpitz": [Reading("", float("nan"), None, None)],  # unplugged
    }
    assert temperatures_of(sensors) == [
        {
            "sensor": "coretemp",
            "label": "Package id 0",
            "current_celsius": 48.0,
            "high_celsius": 80.0,
            "critical_celsius": 100.0,
        },
        {"sensor": "coretemp", "label": "1", "current_celsius": 45.5},
    ]
    assert temperatures_of({}) is None


def test_fans_report_rpm_and_no_fans_is_no_group():
    fan = namedtuple("sfan", "label current")
    assert fans_of({"thinkpad": [fan("", 2900)]}) == [
        {"sensor": "thinkpad", "label": "0", "speed_rpm": 2900}
    ]
    assert fans_of({}) is None


class FakeNvml:
    """nvidia-ml-py's calls as a board without power readings answers them."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA A100"  # older nvidia-ml-py releases return bytes

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle}"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=37)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=2**30, total=40 * 2**30)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 55

    def nvmlDeviceGetPowerUsage(self, handle):
        raise self.NVMLError("Not Supported")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 250_000  # milliwatts


def test_each_gpu_reports_what_it_supports_and_leaves_the_rest_absent():
    gpus = NvidiaGpus(FakeNvml(), ["a", "b"]).read()
    assert gpus[1] == {
        "index": 1,
        "name": "NVIDIA A100",
        "uuid": "GPU-b",
        "utilization_percent": 37.0,
        "memory_used_bytes": 2**30,
        "memory_total_bytes": 40 * 2**30,
        "temperature_celsius": 55.0,
        "power_limit_watts": 250.0,
    }
    raw = orjson.dumps(sample_document(gpus=gpus))
    assert to_json(parse_sample(raw)) == raw


def test_without_the_nvidia_driver_there_are_no_gpus(tmp_path: Path):
    assert NvidiaGpus.open(driver=tmp_path / "no-driver") is None


def test_no_battery_is_no_battery_group():
    assert battery_of(None) is None


def test_a_boolean_field_must_be_a_boolean():
    document = sample_document(battery={"percent": 50.0, "plugged": "yes"})
    with pytest.raises(RejectedRecord, match="battery.plugged must be true or false"):
        parse_sample(orjson.dumps(document))
    document["battery"]["plugged"] = True
    assert parse_sample(orjson.dumps(document)).battery.plugged is True


def test_tags_parse_in_order_and_reject_what_is_not_key_value():
    assert parse_tags(" env=prod, team = db ,") == [("env", "prod"), ("team", "db")]
    assert parse_tags("") == []
    for bad in ("env", "=prod", "env=a,env=b"):
        with pytest.raises(ValueError, match="expected key=value|given twice"):
            parse_tags(bad)


def test_bad_tags_are_a_configuration_error_naming_the_variable():
    with pytest.raises(ValueError, match="tags"):
        load(CollectorSettings, {}, tags="env")


def test_host_id_is_a_hash_of_the_machine_id_stable_and_not_the_raw_id(tmp_path: Path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    first = default_host_id(tmp_path / "state", (machine_id,))
    assert first == default_host_id(tmp_path / "other", (machine_id,))
    assert len(first) == 32
    assert first != "3d1219c7c4c5404aaa1f6d2a48adfda4"
    assert not (tmp_path / "state").exists()


def test_without_a_machine_id_the_host_id_is_generated_once_and_kept(tmp_path: Path):
    missing = (tmp_path / "no-machine-id",)
    first = default_host_id(tmp_path / "state", missing)
    assert first == default_host_id(tmp_path / "state", missing)
    assert (tmp_path / "state" / "host-id").read_text().strip() == first


def test_hoststream_host_id_overrides_the_derived_one(tmp_path: Path):
    derived = load(CollectorSettings, {}, collector_dir=tmp_path).host_id
    assert len(derived) == 32
    settings = load(CollectorSettings, {}, host_id="db-1", collector_dir=tmp_path)
    assert settings.host_id == "db-1"


def _all_values(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _all_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_values(item)
    else:
        yield value


def test_proc_files_give_the_figures_psutil_gives():
    proc = ProcFiles.open()
    assert proc is not None
    try:
        fields = len(psutil.cpu_times()._fields)
        cores, activity = proc.cpu(fields)
        reference = psutil.cpu_times(percpu=True)
        assert len(cores) == len(reference)
        # Counters move between the two reads: only ever forward, and by little.
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        for ours, theirs in zip(cores, reference, strict=True):
            assert len(ours) == fields
            assert all(0 <= t - o / ticks_per_s < 5 for o, t in zip(ours, theirs, strict=True))
        stats = psutil.cpu_stats()
        assert 0 <= stats.ctx_switches - activity.ctx_switches < 10**6
        assert 0 <= stats.interrupts - activity.interrupts < 10**6
        assert activity.syscalls == 0
        memory, vm, swap = proc.memory(), psutil.virtual_memory(), psutil.swap_memory()
        assert memory.total == vm.total
        assert memory.swap_total == swap.total
        assert abs(memory.available - vm.available) < 64 * 2**20
        assert memory.used == memory.total - memory.available
        assert abs(memory.percent - vm.percent) < 1
        assert abs(memory.swap_used - swap.used) < 64 * 2**20
        net, psutil_net = proc.net(), psutil.net_io_counters(pernic=True)
        assert net.keys() == psutil_net.keys()
        for name, counters in net.items():
            assert counters._fields == psutil_net[name]._fields
            assert 0 <= psutil_net[name].packets_recv - counters.packets_recv < 10**6
        disks, psutil_disks = proc.disks(), psutil.disk_io_counters(perdisk=True)
        assert disks.keys() == psutil_disks.keys()
        for name, device in disks.items():
            assert 0 <= psutil_disks[name].write_count - device.write_count < 10**6
            assert 0 <= psutil_disks[name].busy_time - device.busy_time < 10**6
        swapped_in, swapped_out = proc.swapped()
        assert 0 <= swap.sin - swapped_in < 64 * 2**20
        assert 0 <= swap.sout - swapped_out < 64 * 2**20
    finally:
        proc.close()


def test_proc_files_are_not_used_where_they_are_missing(tmp_path: Path):
    assert ProcFiles.open(str(tmp_path)) is None


class PublisherWithABug:
    """What delivery meets when its publisher has a bug: no broker is involved."""

    servers = "127.0.0.1:9"

    async def send(self, value: bytes, key: bytes) -> asyncio.Future[object]:
        raise ValueError("a bug in the publisher")


async def test_a_delivery_that_dies_stops_the_collector_at_once_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    spool = Spool(tmp_path, max_bytes=10**6)
    sampler = Sampler("host-1", 0.05)
    try:
        started = time.monotonic()
        with pytest.raises(CollectorDied) as died:
            # Awaited in this task, as the command does: a SystemExit leaving a task of
            # its own (asyncio.wait_for) would stop the event loop. Without a count the
            # collector would sample forever: it must notice at once.
            await collect(sampler, PublisherWithABug(), spool)  # type: ignore[arg-type]
        assert time.monotonic() - started < 5
    finally:
        sampler.close()
    assert died.value.code == 1
    assert str(died.value).startswith(
        "the collector stops: delivery to Kafka died of ValueError: a bug in the publisher "
        "(at test_collector.py:"
    )
    assert str(died.value).endswith(f"samples stay in the spool {tmp_path} for the next run")
    assert len(spool) >= 1
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical == [str(died.value)]
    spool.close()
