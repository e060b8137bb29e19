"""The on-disk spool: order, the size limit, the dropped count, surviving a restart, and
a file damaged under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector import spool as spool_module
from collector.spool import Spool, SpoolDamaged, SpoolLocked, spool_directory, spooled


def payload(n: int) -> bytes:
    return b'{"n": %05d}' % n  # 12 bytes each


def contents(spool: Spool) -> list[bytes]:
    held = [data for _, data in spool.oldest(10_000)]
    spool.release()
    return held


def test_samples_come_out_oldest_first_and_leave_when_done(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(5):
        spool.append(payload(n))
    (first, data), *_ = spool.oldest(2)
    assert data == payload(0)
    spool.done([first])
    assert contents(spool) == [payload(n) for n in range(1, 5)]
    assert (len(spool), spool.size_bytes) == (4, 48)


def test_a_full_spool_drops_the_oldest_and_counts_them_across_restarts(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=60)  # room for 5
    for n in range(8):
        spool.append(payload(n))
    assert contents(spool) == [payload(n) for n in range(3, 8)]
    assert spool.dropped == 3
    spool.close()
    reopened = Spool(tmp_path, max_bytes=60)
    assert reopened.dropped == 3
    assert contents(reopened) == [payload(n) for n in range(3, 8)]


def test_a_sample_kafka_refused_leaves_and_counts_as_dropped_across_restarts(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=60)  # room for 5
    for n in range(3):
        spool.append(payload(n))
    spool.refused(1)
    assert (spool.dropped, contents(spool)) == (1, [payload(0), payload(2)])
    for n in range(3, 7):
        spool.append(payload(n))  # one more than fits: the full spool drops sample 0
    spool.close()
    reopened = Spool(tmp_path, max_bytes=60)
    assert reopened.dropped == 2
    assert contents(reopened) == [payload(n) for n in (2, 3, 4, 5, 6)]


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_sample_damaged_after_it_was_spooled_is_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
):
    monkeypatch.setattr(spool_module, "CACHED", 2)  # the others are read back from the file
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(4):
        spool.append(payload(n))
    (segment,) = tmp_path.glob("*.log")
    if damage == "truncated":
        os.truncate(segment, segment.stat().st_size - 5)
    else:
        with segment.open("r+b") as file:
            file.seek(-5, os.SEEK_END)
            file.write(b"99999")
    assert [data for _, data in spool.oldest(3)] == [payload(n) for n in range(3)]
    with pytest.raises(SpoolDamaged, match=f"sample 3 in the spool file {segment} "):
        spool.oldest(4)


def test_samples_being_sent_are_not_dropped(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=36)  # room for 3
    for n in range(3):
        spool.append(payload(n))
    spool.oldest(1)  # sample 0 is on its way to Kafka
    spool.append(payload(3))
    assert contents(spool) == [payload(0), payload(2), payload(3)]
    spool.close()
    # Sample 1 was dropped behind sample 0, which was still waiting: a hole that
    # the next run must see too.
    assert contents(Spool(tmp_path, max_bytes=36)) == [payload(0), payload(2), payload(3)]


def test_a_restarted_collector_sends_only_what_was_not_done_in_order(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(12):
        spool.append(payload(n))
    spool.done([0, 1, 2, 5, 7])  # acknowledged out of order, as a refused record is
    spool.close()
    again = Spool(tmp_path, max_bytes=10_000)
    again.append(payload(12))
    assert contents(again) == [payload(n) for n in (3, 4, 6, 8, 9, 10, 11, 12)]
    assert spooled(tmp_path) == contents(again)


def test_a_record_cut_short_by_a_crash_is_cut_off_and_the_rest_kept(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(3):
        spool.append(payload(n))
    spool.close()
    (segment,) = tmp_path.glob("*.log")
    with segment.open("ab") as file:
        file.write(b"\x0c\x00\x00\x00\x99")  # a header begun, never finished
    assert spooled(tmp_path) == [payload(n) for n in range(3)]
    again = Spool(tmp_path, max_bytes=10_000)
    again.append(payload(3))
    again.close()
    assert spooled(tmp_path) == [payload(n) for n in range(4)]


def test_a_ledger_line_cut_short_by_a_crash_only_means_sending_again(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(4):
        spool.append(payload(n))
    spool.done([0])
    spool.close()
    with (tmp_path / "done").open("ab") as file:
        file.write(b"1 ")  # "1 3\n" never finished
    assert spooled(tmp_path) == [payload(n) for n in range(1, 4)]


def test_segments_go_once_done_and_numbers_are_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 50)  # 3 records a segment
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(10):
        spool.append(payload(n))
    assert len(list(tmp_path.glob("*.log"))) == 4
    numbers = [number for number, _ in spool.oldest(9)]
    spool.done(numbers)
    # Only the segment still written to stays; the ledger names what it holds.
    assert len(list(tmp_path.glob("*.log"))) == 1
    assert len((tmp_path / "done").read_bytes().splitlines()) <= 2
    spool.done([9])
    spool.close()
    again = Spool(tmp_path, max_bytes=10_000)
    assert len(again) == 0
    again.append(payload(10))
    again.close()
    assert spooled(tmp_path) == [payload(10)]
    (number, _), *_ = Spool(tmp_path, max_bytes=10_000).oldest(1)
    assert number == 10


def test_a_sample_written_by_a_new_run_is_not_taken_for_one_already_sent(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(payload(0))
    spool.done([number for number, _ in spool.oldest(1)])
    spool.close()
    again = Spool(tmp_path, max_bytes=10_000)
    again.append(payload(1))
    again.close()
    assert spooled(tmp_path) == [payload(1)]


def test_two_collectors_cannot_share_a_spool(tmp_path: Path):
    Spool(tmp_path, max_bytes=1000)
    with pytest.raises(SpoolLocked, match=str(tmp_path)):
        Spool(tmp_path, max_bytes=1000)


def test_each_topic_and_host_has_its_own_spool_with_a_safe_name(tmp_path: Path):
    assert spool_directory(tmp_path, "machine_metrics", "../db 1") == (
        tmp_path / "spool" / "machine_metrics" / "_db_1"
    )
