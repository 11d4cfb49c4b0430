"""Grants or revokes Kafka ACLs with confluent-kafka's admin client (the
broker's own authorizer keeps them).

usage: acls.py BOOTSTRAP create|delete PRINCIPAL < LINES
Each line of stdin is `RESOURCE PATTERN NAME OPERATION` as Kafka names them
(`topic prefixed weir. read`, `cluster literal kafka-cluster describe_configs`);
every ACL allows, from any host.
"""
import sys

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

bootstrap, action, principal = sys.argv[1], sys.argv[2], sys.argv[3]
bindings = []
for line in sys.stdin.read().splitlines():
    if not line.strip():
        continue
    resource, pattern, name, operation = line.split()
    # confluent-kafka calls Kafka's cluster resource BROKER.
    resource = {"cluster": "broker"}.get(resource, resource)
    args = (ResourceType[resource.upper()], name, ResourcePatternType[pattern.upper()], principal, "*",
            AclOperation[operation.upper()], AclPermissionType.ALLOW)
    bindings.append(AclBinding(*args) if action == "create" else AclBindingFilter(*args))

admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.create_acls(bindings) if action == "create" else admin.delete_acls(bindings)
for binding, future in futures.items():
    future.result(timeout=30)
