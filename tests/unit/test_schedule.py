from hypothesis import given
from hypothesis import strategies as st

from collector.schedule import next_tick


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


def test_an_hour_of_ticks_does_not_drift():
    now, interval = 1_700_000_000.0, 10.0
    for _ in range(360):
        # The collector wakes a little late each time; the grid absorbs it.
        now = next_tick(now, interval) + 0.013
    assert abs(now - (1_700_000_000.0 + 3600 + 0.013)) < 1e-6
