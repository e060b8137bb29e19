import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.anomalies import Thresholds, gold_row, p95
from schemas.quantiles import (
    SKETCH_MIN_PERCENT,
    SKETCH_RELATIVE_ACCURACY,
    Sketch,
    bucket,
    exact_quantile,
    quantile,
)
from schemas.windows import (
    INT64_MAX,
    HostState,
    Watermark,
    WindowAggregate,
    WindowSample,
    advance,
    aggregate,
    close_windows,
    decode_state,
    encode_state,
    expired_hosts,
    forget_flushed,
    is_late,
    window_start,
)

percents = st.floats(min_value=0, max_value=100, allow_nan=False)


def sample(offset=0, cpu=50.0, memory=40.0, t=1_000.0, partition=0, **kw) -> WindowSample:
    fields = {
        "host_id": "h",
        "sample_time_s": t,
        "partition": partition,
        "offset": offset,
        "cpu_percent": cpu,
        "memory_percent": memory,
        "disk_max_percent": 10.0,
        "net_bytes_sent_delta": 100,
        "net_bytes_recv_delta": 200,
    }
    return WindowSample(**{**fields, **kw})


def sketch_of(values):
    return aggregate(sample(offset=i, cpu=v) for i, v in enumerate(values)).cpu_buckets


@given(st.floats(min_value=0, max_value=2e9), st.sampled_from([300, 3600]))
def test_a_timestamp_falls_in_exactly_one_window(t, size):
    start = window_start(t, size)
    assert start % size == 0
    assert start <= t < start + size


@given(st.lists(percents, min_size=1, max_size=500))
def test_sketch_p95_is_within_one_percent_of_the_exact_p95(values):
    exact = exact_quantile(values, 0.95)
    estimate = quantile(sketch_of(values), 0.95)
    if exact >= SKETCH_MIN_PERCENT:
        assert abs(estimate - exact) <= SKETCH_RELATIVE_ACCURACY * exact * (1 + 1e-9)
        assert abs(estimate - exact) <= 0.01 * exact
    else:
        assert estimate == 0.0


@given(st.lists(percents, min_size=1, max_size=60))
def test_a_windows_p95_is_exact_under_20_samples_and_never_above_its_maximum(values):
    exact = exact_quantile(values, 0.95)
    estimate = p95(sketch_of(values), len(values), max(values))
    assert estimate <= max(values)
    if len(values) < 20:
        assert estimate == exact
    elif exact >= SKETCH_MIN_PERCENT:
        assert abs(estimate - exact) <= SKETCH_RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_exact_quantile_is_nearest_rank():
    values = list(range(1, 101))
    assert exact_quantile(values, 0.95) == 95
    assert exact_quantile([7.0], 0.95) == 7.0
    assert exact_quantile([], 0.95) == 0.0


@given(st.lists(percents, max_size=100), st.lists(percents, max_size=100))
def test_adding_in_two_batches_equals_adding_at_once(first, second):
    samples = [sample(offset=i, cpu=v, memory=v) for i, v in enumerate(first + second)]
    split = aggregate(samples[: len(first)])
    for s in samples[len(first) :]:
        split.add(s)
    assert split == aggregate(samples)


def test_advancing_a_replayed_batch_changes_nothing_but_rewrites_its_windows():
    state = advance(None, [sample(offset=1), sample(offset=2)], grace_s=60).state
    again = advance(state, [sample(offset=1), sample(offset=2)], grace_s=60)
    assert again.touched == {("5min", 900), ("1h", 0)}  # rows written again, as stored
    assert again.late == []
    assert state.windows[("5min", 900)].count == 2
    grown = advance(state, [sample(offset=2), sample(offset=3, cpu=99.0)], grace_s=60).state
    window = grown.windows[("5min", 900)]
    assert (window.count, window.cpu_max, window.offsets) == (3, 99.0, {0: 3})


def test_offsets_are_tracked_per_partition():
    agg = aggregate([sample(offset=10, partition=0)])
    assert not agg.covers(sample(offset=3, partition=1))
    assert agg.covers(sample(offset=3, partition=0))


def test_the_table_encoding_of_a_host_state_round_trips():
    agg = aggregate([sample(offset=4, cpu=0.0), sample(offset=9, cpu=73.2, partition=3)])
    state = HostState(
        Watermark(1_300.5, 3, 9),
        windows={("5min", 1_200): agg, ("1h", 0): WindowAggregate(), ("5min", 900): agg},
        closed_at={("5min", 900): 7},
    )
    assert decode_state(encode_state(state)) == state
    assert decode_state(encode_state(HostState(Watermark(0.0, 0, 0)))) == HostState(
        Watermark(0.0, 0, 0)
    )


def test_a_closed_window_leaves_the_state_once_its_closing_batch_is_acknowledged():
    # 5-minute windows [900, 1200) and [1200, 1500), the hour [0, 3600); grace 60 s.
    agg = aggregate([sample(offset=1)])
    state = HostState(
        Watermark(1_250.0, 0, 5),
        windows={("5min", 900): agg, ("5min", 1_200): agg, ("1h", 0): agg},
    )
    assert close_windows(state, grace_s=60) == []  # 1200 + 60 is not before 1250
    state.mark = Watermark(1_261.0, 0, 8)
    assert close_windows(state, grace_s=60) == [("5min", 900)]
    assert close_windows(state, grace_s=60) == []  # closed once, at the offset it closed
    assert state.closed_at == {("5min", 900): 8}
    forget_flushed(state, acknowledged_offset=7)  # a replay could still ask for it
    assert ("5min", 900) in state.windows
    forget_flushed(state, acknowledged_offset=8)
    assert set(state.windows) == {("5min", 1_200), ("1h", 0)}
    assert state.closed_at == {}


def test_gold_row_sums_deltas_and_flags_thresholds():
    agg = aggregate(
        [sample(offset=i, cpu=95.0, memory=50.0, disk_max_percent=91.0) for i in range(20)]
    )
    row = gold_row("h", 900, 300, agg, Thresholds())
    assert row.sample_count == 20
    assert row.cpu_avg_percent == pytest.approx(95.0)
    assert row.cpu_p95_percent == pytest.approx(95.0, rel=0.005)
    assert row.net_bytes_sent == 2_000
    assert row.net_bytes_recv == 4_000
    assert (row.cpu_anomaly, row.memory_anomaly, row.disk_anomaly) == (True, False, True)
    assert row.window_start.timestamp() == 900
    assert row.window_end.timestamp() == 1200
    calm = gold_row("h", 900, 300, agg, Thresholds(cpu_p95_percent=96, disk_max_percent=95))
    assert (calm.cpu_anomaly, calm.disk_anomaly) == (False, False)


def test_a_sample_is_late_only_after_its_window_and_the_grace():
    # Window [900, 1200), grace 60 s: it closes when the watermark passes 1260.
    assert not is_late(1_100, 300, 1_260, 60)
    assert is_late(1_100, 300, 1_260.5, 60)
    # 1250 belongs to [1200, 1500), which closes at 1560.
    assert not is_late(1_250, 300, 1_560, 60)
    assert is_late(1_250, 300, 1_561, 60)


def test_zero_percent_has_its_own_bucket():
    assert quantile(Sketch([(bucket(0.0), 5)]), 0.95) == 0.0


def test_lateness_follows_event_time_per_host_in_kafka_order():
    # Windows of 300 s, grace 60 s. Host h: 1000, 1300, then 1100 (window [900, 1200)
    # closes at 1260 < 1300: late for 5 min, on time for the hour [0, 3600)).
    samples = [sample(offset=1, t=1_000), sample(offset=2, t=1_300), sample(offset=3, t=1_100)]
    done = advance(None, samples, grace_s=60)
    counts = {key: window.count for key, window in done.state.windows.items()}
    assert counts == {("5min", 900): 1, ("5min", 1_200): 1, ("1h", 0): 3}
    assert [(s.offset, name) for s, name in done.late] == [(3, "5min")]
    assert done.state.mark == Watermark(1_300, 0, 3)


def test_a_backlog_in_order_is_never_late():
    samples = [sample(offset=i, t=1_000 + 10 * i) for i in range(1_000)]
    done = advance(None, samples, grace_s=0)
    assert done.late == []
    windows = done.state.windows
    assert sum(w.count for (name, _), w in windows.items() if name == "5min") == 1_000


def test_a_replayed_batch_is_not_judged_twice():
    samples = [sample(offset=1, t=1_000), sample(offset=2, t=1_300), sample(offset=3, t=1_100)]
    state = advance(None, samples, grace_s=60).state
    again = advance(state, samples, grace_s=60)
    assert again.late == []
    assert state.windows[("1h", 0)].count == 3
    more = advance(state, [*samples, sample(offset=4, t=1_310)], grace_s=60)
    assert more.late == []
    assert state.windows[("5min", 1_200)].count == 2


def test_byte_totals_saturate_at_64_bits_instead_of_overflowing_the_row():
    def huge(offset: int) -> WindowSample:
        return WindowSample("h", 0.0, 0, offset, 1.0, 1.0, 1.0, INT64_MAX - 1, INT64_MAX - 1)

    one = aggregate([huge(1), huge(2)])
    assert one.net_bytes_sent == INT64_MAX
    one.add(huge(3))
    assert (one.net_bytes_sent, one.net_bytes_recv) == (INT64_MAX, INT64_MAX)
    assert one.count == 3


def test_hosts_quiet_longer_than_the_retention_expire_by_event_time():
    day = 86_400.0
    marks = {
        "busy": Watermark(newest_s=10 * day, partition=0, offset=9),
        "quiet": Watermark(newest_s=8 * day, partition=0, offset=3),
        "recent": Watermark(newest_s=9.5 * day, partition=0, offset=5),
        # Alone on its partition: nothing newer there says time has moved on.
        "alone": Watermark(newest_s=1 * day, partition=1, offset=1),
    }
    assert expired_hosts(marks, retention_s=day) == ["quiet"]
    assert expired_hosts({}, retention_s=day) == []
