"""Baseline (b) of scripts/bench_worker.py: a bare Faust agent that only iterates.

Run as ``python scripts/bench_faust_iterate.py worker``; the topic, app id, web
port and event loop (BENCH_UVLOOP=1) come from BENCH_* variables set by the
benchmark. /count/ tells how many events it has seen.
"""

import os

import faust
import mode.loop

if os.environ.get("BENCH_UVLOOP") == "1":
    mode.loop.use("uvloop")

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    web_port=int(os.environ["BENCH_WEB_PORT"]),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    broker_session_timeout=10,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
)
topic = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes)
seen = 0


@app.agent(topic)
async def iterate(stream):
    global seen
    async for _ in stream:
        seen += 1


@app.page("/count/")
async def count(web, request):
    return web.json({"acknowledged": seen})


if __name__ == "__main__":
    app.main()
