"""`weir bench formats`' Quix Streams side: the `reshape` plugin's field
transform (Avro orders in, Avro shipments out) with Quix Streams' own
registry serializers, on the same broker and registry.

usage: reshape.py BOOTSTRAP REGISTRY INPUT OUTPUT GROUP
Prints `first <epoch seconds>` when it processes its first record; runs
until killed.
"""
import sys
import time

from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
from quixstreams.models.serializers.schema_registry import (
    SchemaRegistryClientConfig,
    SchemaRegistrySerializationConfig,
)

SHIPPED = {"type": "record", "name": "Shipped", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"},
    {"name": "item", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "schema_id", "type": "int"},
]}

bootstrap, registry, input_topic, output_topic, group = sys.argv[1:6]
client = SchemaRegistryClientConfig(url=registry)
app = Application(
    broker_address=bootstrap,
    consumer_group=group,
    auto_offset_reset="earliest",
    loglevel="WARNING",
)
source = app.topic(
    input_topic,
    key_deserializer="bytes",
    value_deserializer=AvroDeserializer(schema_registry_client_config=client),
)
sink = app.topic(
    output_topic,
    key_serializer="bytes",
    value_serializer=AvroSerializer(
        SHIPPED,
        schema_registry_client_config=client,
        schema_registry_serialization_config=SchemaRegistrySerializationConfig(auto_register_schemas=True),
    ),
)
started = []


def reshape(order):
    if not started:
        started.append(time.time())
        print(f"first {started[0]}", flush=True)
    # The plugin's schema_id comes from a header; Quix's deserializer
    # keeps no writer id at hand, so a constant stands in.
    return {"id": order["id"], "item": order["item"].upper(), "qty": order["qty"] * 2, "schema_id": 0}


app.dataframe(source).apply(reshape).to_topic(sink)
app.run()
