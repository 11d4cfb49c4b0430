"""Avro orders in and out of Weir with confluent-kafka's own registry
serializers (an independent client and registry client).

usage:
  avro_orders.py produce BOOTSTRAP REGISTRY TOPIC VERSION N
      N orders written with schema VERSION (v1 or v2) by AvroSerializer,
      which registers it under TOPIC-value; keys `VERSION-i`. Prints the
      schema id.
  avro_orders.py register REGISTRY SUBJECT VERSION
      Registers schema VERSION under SUBJECT; prints its id.
  avro_orders.py produce-framed BOOTSTRAP TOPIC ID VERSION N PREFIX [ITEM]
      N orders framed by hand with schema id ID, no registry needed;
      keys `PREFIX-i`; every item named ITEM if given.
  avro_orders.py produce-bad BOOTSTRAP TOPIC ID
      Three records that cannot decode, keyed by what is wrong with them:
      `bad-magic`, `bad-id` (an id the registry lacks), `bad-truncated`
      (a valid id, the payload cut short), between two good ones
      (`good-before`, `good-after`) written with schema id ID (v1).
  avro_orders.py consume BOOTSTRAP REGISTRY TOPIC N TIMEOUT_S
      Reads N records with AvroDeserializer; prints one JSON object per
      record: key, value (the decoded fields), schema_id.
  avro_orders.py produce-as FORMAT BOOTSTRAP REGISTRY TOPIC N
      N orders (keys `FORMAT-i`, qty i % 7 + 2) by ProtobufSerializer
      (FORMAT protobuf, message shop.Order) or JSONSerializer (FORMAT
      json-schema), which register their schemas under TOPIC-value.
  avro_orders.py consume-as FORMAT BOOTSTRAP REGISTRY TOPIC N TIMEOUT_S
      `consume` with ProtobufDeserializer (message shop.Shipped) or
      JSONDeserializer.
"""
import io
import json
import struct
import sys
import time

import fastavro
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMAS = {
    "v1": {"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
    ]},
    "v2": {"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
        {"name": "qty", "type": "int", "default": 1},
    ]},
}


JSON_ORDER = {"type": "object", "properties": {
    "id": {"type": "integer"}, "item": {"type": "string"}, "qty": {"type": "integer"},
}, "required": ["id", "item", "qty"]}


def proto_class(name, fields):
    """A message class built at run time (no protoc here): `fields` are
    (name, type) of int64, int32 or string, numbered in order."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FieldDescriptorProto
    types = {"int64": f.TYPE_INT64, "int32": f.TYPE_INT32, "string": f.TYPE_STRING}
    file = descriptor_pb2.FileDescriptorProto(name=f"shop/{name.lower()}.proto", package="shop", syntax="proto3")
    message = file.message_type.add(name=name)
    for number, (field, kind) in enumerate(fields, start=1):
        message.field.add(name=field, number=number, type=types[kind], label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"shop.{name}"))


def serializer(fmt, registry):
    client = SchemaRegistryClient({"url": registry})
    if fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        order_class = proto_class("Order", [("id", "int64"), ("item", "string"), ("qty", "int32")])
        serialize = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
        return lambda o, ctx: serialize(order_class(**o), ctx)
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    return JSONSerializer(json.dumps(JSON_ORDER), client)


def deserializer(fmt, registry):
    if fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf.json_format import MessageToDict
        shipped = proto_class("Shipped", [("id", "int64"), ("item", "string"), ("qty", "int32"), ("schema_id", "int32")])
        parse = ProtobufDeserializer(shipped, {"use.deprecated.format": False})
        return lambda b, ctx: MessageToDict(parse(b, ctx), preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if fmt == "json-schema":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        return JSONDeserializer(None, schema_registry_client=SchemaRegistryClient({"url": registry}))
    return AvroDeserializer(SchemaRegistryClient({"url": registry}))


def order(version, i):
    o = {"id": i, "item": f"item-{i}"}
    if version == "v2":
        o["qty"] = i % 7 + 2
    return o


def producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})


def flush(p):
    if p.flush(60) != 0:
        sys.exit("not every record was acknowledged")


def framed(schema_id, version, value):
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMAS[version]), value)
    return out.getvalue()


def main(mode, args):
    if mode == "produce":
        bootstrap, registry, topic, version, n = args[0], args[1], args[2], args[3], int(args[4])
        client = SchemaRegistryClient({"url": registry})
        serialize = AvroSerializer(client, json.dumps(SCHEMAS[version]))
        p = producer(bootstrap)
        schema_id = None
        for i in range(n):
            value = serialize(order(version, i), SerializationContext(topic, MessageField.VALUE))
            schema_id = struct.unpack(">I", value[1:5])[0]
            p.produce(topic, key=f"{version}-{i}", value=value)
            p.poll(0)
        flush(p)
        print(schema_id)
    elif mode == "register":
        registry, subject, version = args
        client = SchemaRegistryClient({"url": registry})
        print(client.register_schema(subject, Schema(json.dumps(SCHEMAS[version]), "AVRO")))
    elif mode == "produce-framed":
        bootstrap, topic, schema_id, version, n, prefix = args[0], args[1], int(args[2]), args[3], int(args[4]), args[5]
        item = args[6] if len(args) > 6 else None
        p = producer(bootstrap)
        for i in range(n):
            value = order(version, i)
            if item is not None:
                value["item"] = item
            p.produce(topic, key=f"{prefix}-{i}", value=framed(schema_id, version, value))
            p.poll(0)
        flush(p)
    elif mode == "produce-bad":
        bootstrap, topic, schema_id = args[0], args[1], int(args[2])
        good = framed(schema_id, "v1", {"id": 1, "item": "fine"})
        p = producer(bootstrap)
        for key, value in [
            ("good-before", good),
            ("bad-magic", b"\x01" + good[1:]),
            ("bad-id", struct.pack(">bI", 0, 2**31 - 1) + good[5:]),
            ("bad-truncated", good[:6]),
            ("good-after", good),
        ]:
            # One partition, so the bad ones sit between the good ones.
            p.produce(topic, key=key, value=value, partition=0)
        flush(p)
    elif mode == "produce-as":
        fmt, bootstrap, registry, topic, n = args[0], args[1], args[2], args[3], int(args[4])
        serialize = serializer(fmt, registry)
        p = producer(bootstrap)
        for i in range(n):
            value = serialize(order("v2", i), SerializationContext(topic, MessageField.VALUE))
            p.produce(topic, key=f"{fmt}-{i}", value=value)
            p.poll(0)
        flush(p)
    elif mode in ("consume", "consume-as"):
        fmt = args.pop(0) if mode == "consume-as" else "avro"
        bootstrap, registry, topic, n, timeout = args[0], args[1], args[2], int(args[3]), float(args[4])
        deserialize = deserializer(fmt, registry)
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"avro-reader-{time.time()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
        c.subscribe([topic])
        seen, deadline = 0, time.time() + timeout
        while seen < n and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            value = m.value()
            fields = deserialize(value, SerializationContext(topic, MessageField.VALUE))
            print(json.dumps({
                "key": m.key().decode(),
                "value": fields,
                "schema_id": struct.unpack(">I", value[1:5])[0],
            }), flush=True)
            seen += 1
        c.close()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
