"""Router: fans each record out to every topic whose pattern its value
contains. Routes are config entries ``route.<topic>`` = ``<substring>``; a
record matching no route goes to the default output topic."""

import weir


@weir.transform
class Router(weir.Transform):
    def __init__(self, config: weir.Config) -> None:
        self.routes: list[tuple[str, bytes]] = [
            (key[len("route.") :], pattern.encode()) for key, pattern in config.items() if key.startswith("route.")
        ]
        if any(not topic or not pattern for topic, pattern in self.routes):
            raise weir.ConfigError("every `route.<topic>` needs a topic name and a non-empty pattern")

    def process(self, record: weir.Record, out: weir.Emitter) -> None:
        value = record.value or b""
        routed = False
        for topic, pattern in self.routes:
            if pattern in value:
                out.emit(record.key, value, topic=topic, headers=record.headers)
                routed = True
        if not routed:
            out.forward(record)
