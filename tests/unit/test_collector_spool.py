"""The on-disk spool: order, the size limit, the dropped count, and surviving a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.spool import Spool, SpoolLocked, spool_directory


def payload(n: int) -> bytes:
    return b'{"n": %05d}' % n  # 12 bytes each


def contents(spool: Spool) -> list[bytes]:
    held = [data for _, data in spool.oldest(10_000)]
    spool.release()
    return held


def test_samples_come_out_oldest_first_and_leave_when_acknowledged(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(5):
        spool.append(payload(n))
    (first, data), *_ = spool.oldest(2)
    assert data == payload(0)
    spool.remove(first)
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


def test_samples_being_sent_are_not_dropped(tmp_path: Path):
    spool = Spool(tmp_path, max_bytes=36)  # room for 3
    for n in range(3):
        spool.append(payload(n))
    spool.oldest(1)  # sample 0 is on its way to Kafka
    spool.append(payload(3))
    assert contents(spool) == [payload(0), payload(2), payload(3)]


def test_a_restarted_collector_finds_the_spool_in_order_and_continues_the_numbering(
    tmp_path: Path,
):
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(12):
        spool.append(payload(n))
    spool.close()
    (tmp_path / "0000000000000099.tmp").write_bytes(b'{"torn')  # a write cut by a crash
    again = Spool(tmp_path, max_bytes=10_000)
    again.append(payload(12))
    assert contents(again) == [payload(n) for n in range(13)]
    assert not list(tmp_path.glob("*.tmp"))


def test_two_collectors_cannot_share_a_spool(tmp_path: Path):
    Spool(tmp_path, max_bytes=1000)
    with pytest.raises(SpoolLocked, match=str(tmp_path)):
        Spool(tmp_path, max_bytes=1000)


def test_each_topic_and_host_has_its_own_spool_with_a_safe_name(tmp_path: Path):
    assert spool_directory(tmp_path, "machine_metrics", "../db 1") == (
        tmp_path / "spool" / "machine_metrics" / "_db_1"
    )
