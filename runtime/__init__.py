"""Everything that touches Faust's or aiokafka's internals, and nothing else does.

The batching consumer (consumer.py), the seek before reading (seeking.py), the
batch and the table partition it writes to (batch.py), the stages' shared loop
(pipeline.py) and the commit decision (checkpoint.py). Each private name relied
on is listed in :data:`runtime.internals.PRIVATE_NAMES`, and
tests/unit/test_runtime_internals.py fails when an upgrade moves one.
"""
