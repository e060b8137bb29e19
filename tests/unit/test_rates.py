from hypothesis import given
from hypothesis import strategies as st

from collector.rates import (
    busy_percent,
    busy_share,
    counter_delta,
    counter_rate,
    counter_rates,
    time_shares,
)

counters = st.integers(min_value=0, max_value=2**64)
elapsed = st.floats(min_value=1e-3, max_value=3600, allow_nan=False)


def test_rate_is_delta_over_elapsed_time():
    assert counter_rate(1_000, 3_000, 2.0) == 1_000.0


def test_first_reading_has_no_rate():
    assert counter_rate(None, 123_456, 10.0) == 0.0


def test_counter_reset_gives_zero_not_a_negative_or_huge_rate():
    assert counter_rate(2**32 - 10, 5, 10.0) == 0.0


def test_no_elapsed_time_gives_zero():
    assert counter_rate(10, 20, 0.0) == 0.0
    assert counter_rate(10, 20, -1.0) == 0.0


@given(st.lists(st.tuples(counters, elapsed), min_size=2, max_size=50))
def test_rates_are_never_negative_for_any_counter_sequence(readings):
    previous = None
    for value, seconds in readings:
        assert counter_rate(previous, value, seconds) >= 0.0
        previous = value


@given(counters, st.lists(st.tuples(st.integers(0, 10**9), elapsed), min_size=1, max_size=50))
def test_rates_times_elapsed_add_up_to_the_counter_increase(start, steps):
    previous, total = start, 0.0
    for increase, seconds in steps:
        current = previous + increase
        total += counter_rate(previous, current, seconds) * seconds
        previous = current
    assert abs(total - (previous - start)) <= 1e-6 * max(1, previous - start)


def test_delta_is_the_increase_and_zero_after_a_reset_or_without_history():
    assert counter_delta(100, 250) == 150
    assert counter_delta(None, 250) == 0
    assert counter_delta(2**32 - 1, 3) == 0


@given(
    st.lists(st.integers(0, 2**40), min_size=1, max_size=8).flatmap(
        lambda first: st.tuples(
            st.just(first),
            st.lists(st.integers(0, 2**40), min_size=len(first), max_size=len(first)),
        )
    ),
    elapsed,
)
def test_tuple_rates_are_never_negative_and_zero_where_a_counter_went_back(readings, seconds):
    before, after = readings
    rates = counter_rates(before, after, seconds)
    for old, new, rate in zip(before, after, rates, strict=True):
        assert rate >= 0.0
        if new < old:
            assert rate == 0.0


def test_tuple_rates_without_a_previous_reading_are_zero():
    assert counter_rates(None, (5, 6, 7), 1.0) == [0.0, 0.0, 0.0]


@given(st.integers(0, 2**40), st.integers(0, 2**40), elapsed)
def test_busy_percent_stays_within_0_and_100(before_ms, after_ms, seconds):
    assert 0.0 <= busy_percent(before_ms, after_ms, seconds) <= 100.0


def test_busy_percent_is_busy_milliseconds_over_elapsed_time():
    assert busy_percent(1_000, 1_250, 1.0) == 25.0


cpu_times = st.lists(st.floats(0, 1e7, allow_nan=False), min_size=3, max_size=10)


@given(
    cpu_times.flatmap(
        lambda first: st.tuples(
            st.just(first),
            st.lists(st.floats(0, 1e7, allow_nan=False), min_size=len(first), max_size=len(first)),
        )
    )
)
def test_time_shares_are_percentages_that_add_up_to_100(readings):
    before, after = readings
    shares = time_shares(before, after)
    if shares is None:
        # Only when no CPU time passed in any field.
        assert all(new <= old for old, new in zip(before, after, strict=True))
        return
    assert all(0.0 <= share <= 100.0 for share in shares)
    assert abs(sum(shares) - 100.0) < 1e-6


def test_time_shares_of_one_busy_second_out_of_four():
    assert time_shares([10.0, 30.0], [11.0, 33.0]) == [25.0, 75.0]


@given(
    cpu_times.flatmap(
        lambda first: st.tuples(
            st.just(first),
            st.lists(st.floats(0, 1e7, allow_nan=False), min_size=len(first), max_size=len(first)),
            st.sets(st.integers(0, len(first) - 1), max_size=2),
        )
    )
)
def test_busy_share_is_what_is_not_idle_and_0_when_no_time_passed(readings):
    before, after, idle = readings
    busy = busy_share(time_shares(before, after), sorted(idle))
    assert 0.0 <= busy <= 100.0
    shares = time_shares(before, after)
    if shares is None:
        assert busy == 0.0
    else:
        assert abs(busy - max(0.0, 100.0 - sum(shares[i] for i in idle))) < 1e-6


def test_no_clock_tick_between_two_readings_is_not_a_busy_cpu():
    reading = [3.0, 1.0, 96.0, 0.5]
    assert time_shares(reading, reading) is None
    assert busy_share(time_shares(reading, reading), [2, 3]) == 0.0
