"""Produces records into Weir's input with confluent-kafka (an independent
client) and reads the outputs back with it.

usage: confluent_roundtrip.py BOOTSTRAP IN_TOPIC OUT_TOPIC N CODEC
Produces with `compression.type` CODEC (none, gzip, snappy, lz4, zstd), and
prints one JSON object per output record of this run (its values name the
codec): key, value, headers, partition.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, in_topic, out_topic, n, codec = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": codec})
for i in range(n):
    producer.produce(in_topic, key=f"k{i % 10}", value=f"py-{codec}-{i}", headers=[("seq", str(i)), ("origin", "python")])
    producer.poll(0)
if producer.flush(60) != 0:
    sys.exit("not every record was acknowledged")

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"interop-reader-{codec}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([out_topic])
seen = 0
deadline = time.monotonic() + 90
while seen < n and time.monotonic() < deadline:
    m = consumer.poll(0.5)
    if m is None or m.error() or not m.value().decode().startswith(f"PY-{codec.upper()}-"):
        continue
    headers = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
    print(json.dumps({"key": m.key().decode(), "value": m.value().decode(), "headers": headers, "partition": m.partition()}))
    seen += 1
consumer.close()
