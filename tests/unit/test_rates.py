from hypothesis import given
from hypothesis import strategies as st

from collector.rates import counter_delta, counter_rate

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
