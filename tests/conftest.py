"""Test session set-up: the local stack (real Kafka, PostgreSQL, GCS and BigQuery
emulators on free loopback ports) is started once per session by
``tests/stack_fixtures.py``; nothing is mocked and nothing is skipped."""

pytest_plugins = ["tests.stack_fixtures", "tests.integration.fixtures"]
