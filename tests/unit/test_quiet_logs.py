import logging

from app.quiet_logs import QuietRepeats


def record(msg: str, *args: object, name: str = "aiokafka.client") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_client_error_repeated_while_the_broker_is_away_is_logged_once_a_minute():
    now = [0.0]
    quiet = QuietRepeats(60.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for second in range(130):
        now[0] = float(second)
        for _ in range(10):
            r = record(template, 1, "Connection refused")
            if quiet.filter(r):
                passed.append(r.getMessage())
    assert passed == [
        "Unable connect to node with id 1: Connection refused",
        "Unable connect to node with id 1: Connection refused "
        "(599 more like this in the last 60 s)",
        "Unable connect to node with id 1: Connection refused "
        "(599 more like this in the last 60 s)",
    ]


def test_other_messages_and_loggers_are_not_held_back_by_it():
    quiet = QuietRepeats(60.0, clock=lambda: 0.0)
    assert quiet.filter(record("Unable to update metadata from %s", [1]))
    assert quiet.filter(record("Failed fetch messages from %s: %s", 1, "x"))
    assert quiet.filter(record("Unable to update metadata from %s", [1], name="aiokafka.conn"))
    assert not quiet.filter(record("Unable to update metadata from %s", [1]))
