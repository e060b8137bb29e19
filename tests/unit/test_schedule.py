import itertools

from hypothesis import given
from hypothesis import strategies as st

from collector.schedule import crossed, next_tick


def test_next_tick_is_the_next_multiple_of_the_interval():
    assert next_tick(1_000.0, 10.0) == 1_010.0
    assert next_tick(1_003.2, 10.0) == 1_010.0
    assert next_tick(1_009.999, 10.0) == 1_010.0


@given(
    st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    st.sampled_from([1.0, 5.0, 10.0, 60.0]),
)
def test_next_tick_is_after_now_and_on_the_grid(now, interval):
    tick = next_tick(now, interval)
    assert now < tick <= now + interval
    assert tick % interval == 0


@given(
    st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.7]),
)
def test_the_tick_after_a_tick_is_the_next_one_even_for_inexact_intervals(now, interval):
    # 0.2 is no exact binary fraction: a tick fed back in must not come out again.
    tick = next_tick(now, interval)
    following = next_tick(tick, interval)
    assert following > tick
    assert abs(following - tick - interval) < 1e-5


def test_an_hour_of_ticks_does_not_drift():
    now, interval = 1_700_000_000.0, 10.0
    for _ in range(360):
        # The collector wakes a little late each time; the grid absorbs it.
        now = next_tick(now, interval) + 0.013
    assert abs(now - (1_700_000_000.0 + 3600 + 0.013)) < 1e-6


@given(
    st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    st.sampled_from([0.2, 1.0, 2.0, 5.0, 10.0, 60.0]),
    st.sampled_from([1.0, 5.0, 10.0]),
)
def test_once_per_multiple_of_the_period_whatever_the_interval(start, interval, every):
    ticks = [next_tick(start, interval)]
    for _ in range(round(600 / interval)):
        ticks.append(next_tick(ticks[-1], interval))
    hits = [now for previous, now in itertools.pairwise(ticks) if crossed(previous, now, every)]
    multiples = {next_tick(now - interval, every) for now in hits}
    assert len(hits) == len(multiples)  # never twice for one multiple
    assert abs(len(hits) - (ticks[-1] - ticks[0]) / max(interval, every)) <= 1
    if interval >= every:
        assert len(hits) == len(ticks) - 1  # each sample goes at once


def test_a_1_s_collector_sends_every_fifth_sample():
    ticks = [1_700_000_000.0 + n for n in range(11)]
    due = [now for previous, now in itertools.pairwise(ticks) if crossed(previous, now, 5.0)]
    assert due == [1_700_000_005.0, 1_700_000_010.0]
