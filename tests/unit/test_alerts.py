"""Alert rules (schemas/alerts.py) driven through gold's own window maths: a host's
samples go through ``advance`` and ``close_windows`` in batches, as the gold stage does,
then the alerts stage's ``judge_closed``."""

from datetime import UTC, datetime

import orjson
import pytest

from schemas.alerts import AlertEvent, alert_transitions, judge_closed, slack_message
from schemas.anomalies import Thresholds, gold_row
from schemas.windows import (
    HostState,
    WindowSample,
    advance,
    aggregate,
    close_windows,
    decode_state,
    encode_state,
    forget_flushed,
)

T0 = 1_764_460_800  # 2025-11-30T00:00:00Z, a 5-minute boundary
STEP_S = 10
GRACE_S = 5.0
THRESHOLDS = Thresholds()


def sample(offset: int, t: float, cpu: float = 10.0, memory: float = 40.0, disk: float = 20.0):
    return WindowSample("h", t, 0, offset, cpu, memory, disk, 0, 0)


def stream(cpu_by_window: list[float], extra_s: float = GRACE_S + STEP_S) -> list[WindowSample]:
    """A sample every STEP_S with each 5-minute window's CPU, then samples into the
    next window until past the last one's end plus the grace (so it closes)."""
    samples = []
    for w, cpu in enumerate(cpu_by_window):
        for k in range(300 // STEP_S):
            samples.append(sample(len(samples), T0 + 300 * w + STEP_S * k, cpu))
    end = T0 + 300 * len(cpu_by_window)
    t = end
    while t <= end + extra_s:
        samples.append(sample(len(samples), t))
        t += STEP_S
    return samples


class Worker:
    """Gold then alerts on one host, a batch at a time; a batch is acknowledged after
    both stages (the state is then what a checkpoint stores)."""

    def __init__(self, now_s: float, quiet_after_s: float = 3600.0) -> None:
        self.state: HostState | None = None
        self.now_s = now_s
        self.quiet_after_s = quiet_after_s
        self.events: list[AlertEvent] = []

    def gold(self, batch: list[WindowSample]) -> None:
        self.state = advance(self.state, batch, GRACE_S).state
        close_windows(self.state, GRACE_S)

    def alerts(self) -> list[AlertEvent]:
        assert self.state is not None
        done = judge_closed(self.state, "h", THRESHOLDS, self.now_s, self.quiet_after_s)
        if done is None:
            return []
        self.state.alerting, self.state.alerts_judged_s = done.alerting, done.judged_s
        self.events += done.events
        return done.events

    def acknowledge(self, batch: list[WindowSample]) -> None:
        assert self.state is not None
        forget_flushed(self.state, batch[-1].offset)

    def run(self, samples: list[WindowSample], batch_size: int) -> list[AlertEvent]:
        for n in range(0, len(samples), batch_size):
            batch = samples[n : n + batch_size]
            self.gold(batch)
            self.alerts()
            self.acknowledge(batch)
        return self.events


def stored(worker: Worker) -> HostState:
    """The worker's state as the checkpoint stores it and a restart reads it."""
    assert worker.state is not None
    return decode_state(encode_state(worker.state))


def summary(events: list[AlertEvent]) -> list[tuple[str, str, int, int, bool]]:
    return [
        (
            e.metric,
            e.kind,
            int(e.window_start.timestamp()) - T0,
            int(e.since.timestamp()) - T0,
            e.stale,
        )
        for e in events
    ]


@pytest.mark.parametrize("batch_size", [1, 7, 45, 10_000])
def test_two_windows_above_the_cpu_threshold_then_back_give_one_firing_and_one_resolved(
    batch_size: int,
):
    samples = stream([97.0, 97.0, 12.0, 12.0])
    events = Worker(now_s=samples[-1].sample_time_s).run(samples, batch_size)
    assert summary(events) == [("cpu", "firing", 0, 0, False), ("cpu", "resolved", 600, 0, False)]
    firing, resolved = events
    assert (firing.value_percent, firing.threshold_percent) == (97.0, 90.0)
    assert (resolved.value_percent, resolved.threshold_percent) == (12.0, 90.0)
    assert firing.window_end == datetime.fromtimestamp(T0 + 300, tz=UTC)


def test_an_open_window_flapping_across_the_threshold_gives_nothing_until_it_closes():
    worker = Worker(now_s=T0 + 1000)
    # Batches that alone would flag the window, then not, then again: its live row flaps.
    high = [sample(n, T0 + n, cpu=99.0) for n in range(5)]
    low = [sample(5 + n, T0 + 5 + n, cpu=1.0) for n in range(200)]
    high_again = [sample(205 + n, T0 + 205 + n, cpu=99.0) for n in range(30)]
    for batch in (high, low, high_again):
        worker.gold(batch)
        assert worker.alerts() == []
    # 30 of 235 samples above: the p95 is, so the closed window fires, once.
    worker.gold([sample(235, T0 + 300 + GRACE_S + 1)])
    assert summary(worker.alerts()) == [("cpu", "firing", 0, 0, False)]
    worker.gold([sample(236, T0 + 300 + GRACE_S + 2)])
    assert worker.alerts() == []


def test_a_replay_of_old_data_raises_only_stale_events():
    samples = stream([97.0, 97.0, 12.0])
    events = Worker(now_s=T0 + 86_400).run(samples, 50)
    assert summary(events) == [("cpu", "firing", 0, 0, True), ("cpu", "resolved", 600, 0, True)]


def test_an_anomaly_still_open_when_the_worker_catches_up_is_announced_by_its_first_fresh_window():
    samples = stream([97.0, 97.0, 97.0, 97.0, 10.0])
    # Windows ending before T0 + 900 are stale: the backlog; later ones fresh.
    events = Worker(now_s=T0 + 1800, quiet_after_s=900).run(samples, 30)
    assert summary(events) == [
        ("cpu", "firing", 0, 0, True),
        ("cpu", "firing", 600, 0, False),
        ("cpu", "resolved", 1200, 0, False),
    ]
    assert len({e.event_id for e in events}) == 3


def test_each_metric_fires_and_resolves_on_its_own_threshold():
    row = gold_row(
        "h",
        T0,
        300,
        aggregate([sample(0, T0, cpu=50.0, memory=95.0, disk=99.0)]),
        THRESHOLDS,
    )
    alerting: dict[str, tuple[int, bool]] = {}
    fired = alert_transitions(alerting, row, THRESHOLDS, T0 + 300, 900)
    assert [(e.metric, e.kind, e.value_percent) for e in fired] == [
        ("memory", "firing", 95.0),
        ("disk", "firing", 99.0),
    ]
    assert alert_transitions(alerting, row, THRESHOLDS, T0 + 300, 900) == []
    clean = gold_row("h", T0 + 300, 300, aggregate([sample(1, T0 + 300)]), THRESHOLDS)
    resolved = alert_transitions(alerting, clean, THRESHOLDS, T0 + 600, 900)
    assert [(e.metric, e.kind, e.value_percent) for e in resolved] == [
        ("memory", "resolved", 40.0),
        ("disk", "resolved", 20.0),
    ]
    assert alerting == {}


def test_a_crash_after_gold_stored_a_closed_window_judges_it_on_the_replay():
    samples = stream([97.0, 12.0])
    closing = next(n for n, s in enumerate(samples) if s.sample_time_s > T0 + 300 + GRACE_S)
    before, batch = samples[:closing], samples[closing : closing + 1]
    worker = Worker(now_s=samples[-1].sample_time_s)
    worker.run(before, len(before))
    gold_done = Worker(now_s=worker.now_s)
    worker.gold(batch)
    # The checkpoint stored the state between gold and the alerts stage, then a crash:
    gold_done.state = stored(worker)
    gold_done.gold(batch)  # the replay: gold closes nothing new
    assert summary(gold_done.alerts()) == [("cpu", "firing", 0, 0, False)]
    # Stored after the alerts stage instead: the replay raises nothing again.
    assert summary(worker.alerts()) == [("cpu", "firing", 0, 0, False)]
    after = Worker(now_s=worker.now_s)
    after.state = stored(worker)
    after.gold(batch)
    assert after.alerts() == []


def test_event_ids_are_stable_and_events_survive_the_topic():
    samples = stream([97.0, 12.0])
    first = Worker(now_s=samples[-1].sample_time_s).run(samples, 13)
    again = Worker(now_s=samples[-1].sample_time_s).run(samples, 1)
    assert [e.event_id for e in first] == [f"h|cpu|firing|{T0}", f"h|cpu|resolved|{T0 + 300}"]
    assert first == again
    assert [AlertEvent.decode(e.encode()) for e in first] == first
    assert orjson.loads(first[0].encode())["window_start"] == "2025-11-30T00:00:00+00:00"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"schema_version": 2}',
        orjson.dumps({**orjson.loads(b'{"schema_version": 1}'), "metric": "cpu"}),
    ],
)
def test_what_is_not_an_alert_event_is_refused_with_a_value_error(raw: bytes):
    with pytest.raises(ValueError, match="alert event|schema_version|metric"):
        AlertEvent.decode(raw)


def test_a_state_stored_before_alerts_existed_still_decodes():
    worker = Worker(now_s=T0 + 900)
    worker.run(stream([97.0]), 100)
    assert worker.state is not None
    assert worker.state.alerting == {"cpu": (T0, True)}
    assert decode_state(encode_state(worker.state)) == worker.state
    old = orjson.loads(encode_state(worker.state))
    del old["alerting"], old["alerts_judged_s"]
    state = decode_state(orjson.dumps(old))
    assert (state.alerting, state.alerts_judged_s) == ({}, -1)
    assert state.windows == worker.state.windows


def test_a_slack_message_says_host_metric_values_windows_and_links_the_dashboard():
    samples = stream([97.0, 12.0])
    events = Worker(now_s=samples[-1].sample_time_s).run(samples, 100)
    message = slack_message("db-<1>&", events, "https://dash.example/")
    text = message["blocks"][1]["text"]["text"]
    assert "FIRING cpu: CPU p95 97.0 % > 90.0 % in 00:00-00:05 UTC" in text
    assert "RESOLVED cpu: CPU p95 12.0 % <= 90.0 % in 00:05-00:10 UTC" in text
    title = message["blocks"][0]["text"]["text"]
    assert "*db-&lt;1&gt;&amp;*" in title
    assert "<https://dash.example/#host=db-%3C1%3E%26|dashboard>" in title
    assert message["text"].startswith("db-&lt;1&gt;&amp;: FIRING cpu")
    many = slack_message("h", events * 200, "")
    assert len(many["blocks"][1]["text"]["text"]) <= 3000
    assert len(many["text"]) <= 3100
    assert many["blocks"][1]["text"]["text"].endswith("more")
    assert "dashboard" not in many["blocks"][0]["text"]["text"]
