"""SDK and plugin tests under the build machine's CPython with a fake host:
python3 -m unittest discover -s guest-sdk/python/tests"""

from __future__ import annotations

import unittest
from pathlib import Path

import fakehost
from fakehost import HOST, Err, batch, decode, load

import weir
from weir import _json
from wit_world.imports import windows as W

PLUGINS = Path(__file__).resolve().parents[3] / "plugins" / "python"


def run(plugin: str, records: list[dict], config: list[tuple[str, str]] | None = None) -> dict:
    h = load(PLUGINS / plugin)
    h.init(config or [])
    return decode(h.process(batch(records)))


class Upper(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_upper_keeps_key_headers_timestamp(self) -> None:
        out = run("upper", [{"key": "k", "value": "héllo weir", "headers": {"a": "1", "n": None}, "timestamp": 5}, {"value": None}])
        self.assertEqual(
            out["outputs"],
            [
                {"source": 0, "topic": None, "key": b"k", "value": "HéLLO WEIR".encode(), "headers": [("a", b"1"), ("n", None)], "timestamp": None},
                {"source": 1, "topic": None, "key": None, "value": None, "headers": [], "timestamp": None},
            ],
        )


class Router(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_fan_out_and_default(self) -> None:
        out = run(
            "router",
            [{"key": "o-1", "value": "payment ERROR card declined", "headers": {"h": "v"}}, {"key": "o-2", "value": "shipment ok"}],
            [("route.errors", "ERROR"), ("route.payments", "payment")],
        )
        self.assertEqual([(o["source"], o["topic"], o["value"]) for o in out["outputs"]], [
            (0, "errors", b"payment ERROR card declined"),
            (0, "payments", b"payment ERROR card declined"),
            (1, None, b"shipment ok"),
        ])
        self.assertEqual(out["outputs"][0]["headers"], [("h", b"v")])

    def test_empty_pattern_is_an_init_error(self) -> None:
        h = load(PLUGINS / "router")
        with self.assertRaises(Err) as e:
            h.init([("route.x", "")])
        self.assertEqual(e.exception.value, "every `route.<topic>` needs a topic name and a non-empty pattern")


class WordCount(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_counts_and_state_format(self) -> None:
        out = run("word-count", [{"value": "the quick brown fox"}, {"value": "the lazy dog"}, {"value": "The fox, the dog."}])
        self.assertEqual(
            [(o["key"], o["value"]) for o in out["outputs"]][-4:],
            [(b"the", b"3"), (b"fox", b"2"), (b"the", b"4"), (b"dog", b"2")],
        )
        # Same bytes as the Rust SDK's Map<u64> ("count" + 0 + word -> serde_json).
        self.assertEqual(HOST.values[b"count\x00the"], b"4")

    def test_reads_state_written_by_rust(self) -> None:
        HOST.set(b"count\x00fox", b"41", None)
        out = run("word-count", [{"value": "FOX"}])
        self.assertEqual(out["outputs"][0]["value"], b"42")

    def test_word_rules(self) -> None:
        # Non-ASCII characters belong to words and keep their case; ASCII
        # letters are lower-cased; any other ASCII character splits.
        out = run("word-count", [{"value": "हिन्दी ΟΔΟΣ Café a_b x½"}])
        self.assertEqual([o["key"].decode() for o in out["outputs"]], ["हिन्दी", "ΟΔΟΣ", "café", "a", "b", "x½"])

    def test_non_utf8_is_rejected_with_outputs_discarded(self) -> None:
        out = run("word-count", [{"value": b"\xff"}, {"value": "ok"}])
        self.assertEqual(out["rejects"], [(0, "value is not UTF-8 text")])
        self.assertEqual([o["source"] for o in out["outputs"]], [1])


class HostileRaise(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_exception_becomes_reject(self) -> None:
        out = run("hostile-raise", [{"key": "a", "value": "fine"}, {"value": "go boom"}, {"value": "fine too"}])
        self.assertEqual([o["source"] for o in out["outputs"]], [0, 2])
        self.assertEqual(len(out["rejects"]), 1)
        self.assertEqual(out["rejects"][0][0], 1)
        self.assertIn("go boom", out["rejects"][0][1])
        self.assertTrue(out["rejects"][0][1].startswith("ValueError: "))


class WindowCount(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_define_add_and_on_window(self) -> None:
        h = load(PLUGINS / "window-count")
        h.init([("window", "session"), ("gap_ms", "5"), ("emit", "update"), ("grace_ms", "2")])
        (wid, spec), = HOST.windows.values()
        self.assertEqual(spec, W.WindowSpec(W.WindowKind_Session(5), 2, W.Aggregation.COUNT, W.EmitMode.ON_UPDATE, None))
        out = decode(h.process(batch([{"key": "alice", "timestamp": 7}, {"timestamp": 9}])))
        self.assertEqual(out["adds"], [(wid, 0, b"alice", 7, 1.0, None), (wid, 1, b"", 9, 1.0, None)])
        wb = W.WindowBatch(b"alice", [W.WindowResult(wid, fakehost.T.Span(0, 5), 0, 10, 3, 3.0, None, True)])
        out = decode(h.on_window(wb))
        self.assertEqual([(o["key"], o["value"]) for o in out["outputs"]], [(b"alice", b'{"start":0,"end":10,"count":3}')])

    def test_config_messages_match_rust(self) -> None:
        cases = [
            ([], "config `window` is required"),
            ([("window", "tumbling")], "config `size_ms` is required for this window"),
            ([("window", "tumbling"), ("size_ms", "x")], "config `size_ms` = `x`: invalid digit found in string"),
            ([("window", "tumbling"), ("size_ms", "-1")], "config `size_ms` = `-1`: invalid digit found in string"),
            ([("window", "tumbling"), ("size_ms", "")], "config `size_ms` = ``: cannot parse integer from empty string"),
            ([("window", "tumbling"), ("size_ms", "99999999999999999999")], "config `size_ms` = `99999999999999999999`: number too large to fit in target type"),
            ([("window", "hopping"), ("size_ms", "10")], "config `advance_ms` is required for this window"),
            ([("window", "daily")], "config `window` = `daily`: expected tumbling, hopping, sliding, session, count-tumbling or count-hopping"),
            ([("window", "session"), ("gap_ms", "1"), ("emit", "x")], "config `emit` = `x`: expected final or update"),
        ]
        for config, message in cases:
            h = load(PLUGINS / "window-count")
            with self.assertRaises(Err, msg=str(config)) as e:
                h.init(config)
            self.assertEqual(e.exception.value, message)


class Enrich(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()
        HOST.set_table("customers", {b"c1": b"Alice", b"c2": b"Bob", b"\xff\x00": b"B\xc3\xafnary"})

    RECORDS = [
        {"key": "c1", "value": "order-1", "timestamp": 1000},
        {"key": "c3", "value": "order-3", "timestamp": 1002},
        {"value": "no key", "timestamp": 1003},
        {"key": b"\xff\x00", "value": "order-7", "timestamp": 1007},
        {"key": "c2", "timestamp": 1009},
    ]

    def test_inner_join_drops_misses(self) -> None:
        out = run("enrich", self.RECORDS)
        self.assertEqual(
            [(o["source"], o["key"], o["value"], o["timestamp"]) for o in out["outputs"]],
            [(0, b"c1", b"order-1;Alice", 1000), (3, b"\xff\x00", "order-7;Bïnary".encode(), 1007), (4, b"c2", b";Bob", 1009)],
        )
        self.assertEqual(out["rejects"], [])

    def test_left_join_keeps_misses(self) -> None:
        out = run("enrich", self.RECORDS, [("join", "left")])
        self.assertEqual([(o["key"], o["value"]) for o in out["outputs"]][1:3], [(b"c3", b"order-3;"), (None, b"no key;")])

    def test_table_is_read_when_processing(self) -> None:
        h = load(PLUGINS / "enrich")
        h.init([])
        HOST.tables["customers"][b"c3"] = b"Carol"
        out = decode(h.process(batch([{"key": "c3", "value": "order-5"}])))
        self.assertEqual(out["outputs"][0]["value"], b"order-5;Carol")

    def test_init_errors(self) -> None:
        h = load(PLUGINS / "enrich")
        with self.assertRaises(Err) as e:
            h.init([("table", "nope")])
        self.assertEqual(e.exception.value, "no table `nope`: the deployment declares `customers`", "the host's message, unchanged")
        with self.assertRaises(Err) as e:
            h.init([("join", "outer")])
        self.assertEqual(e.exception.value, "join must be `inner` or `left`, not `outer`")


class JoinWindow(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_join_wait_and_expire(self) -> None:
        h = load(PLUGINS / "join-window")
        h.init([("window_ms", "1000"), ("join", "outer")])
        out = decode(h.process(batch([{"key": "o1", "value": "order-1", "timestamp": 1000}, {"key": "o3", "value": "order-3", "timestamp": 1700}], topic="orders")))
        self.assertEqual(out["outputs"], [])
        # Waiting: 8-byte little-endian timestamp + value, timer at ts + window + 1.
        self.assertEqual(HOST.values[b"lo1"], (1000).to_bytes(8, "little") + b"order-1")
        self.assertEqual(HOST.timers[b"lo3"], (2701, weir.timers.EVENT_TIME))
        out = decode(h.process(batch([{"key": "o1", "value": "pay-1", "timestamp": 1500}, {"value": "x"}], topic="payments")))
        self.assertEqual([(o["key"], o["value"], o["timestamp"]) for o in out["outputs"]], [(b"o1", b"order-1;pay-1", 1500)])
        self.assertEqual(out["rejects"], [(1, "record has no key")])
        self.assertNotIn(b"lo1", HOST.values)
        self.assertNotIn(b"lo1", HOST.timers)
        out = decode(h.on_timer(fakehost.timer_batch([(b"lo3", 2701)])))
        self.assertEqual([(o["key"], o["value"], o["timestamp"]) for o in out["outputs"]], [(b"o3", b"order-3;", 1700)])
        self.assertNotIn(b"lo3", HOST.values)
        out = decode(h.process(batch([{"key": "o6", "value": "refund"}], topic="refunds")))
        self.assertEqual(out["rejects"], [(0, "topic `refunds` is neither left (`orders`) nor right (`payments`)")])

    def test_config_messages_match_rust(self) -> None:
        cases = [
            ([("left", "x"), ("right", "x")], "left and right must be different topics, both are `x`"),
            ([("window_ms", "x")], "window_ms: invalid digit found in string"),
            ([("window_ms", " 5")], "window_ms: invalid digit found in string"),
            ([("window_ms", "")], "window_ms: cannot parse integer from empty string"),
            ([("window_ms", "-5")], "window_ms must not be negative, not -5"),
            ([("join", "full")], "join must be `inner`, `left` or `outer`, not `full`"),
        ]
        for config, message in cases:
            h = load(PLUGINS / "join-window")
            with self.assertRaises(Err, msg=str(config)) as e:
                h.init(config)
            self.assertEqual(e.exception.value, message)


class Sdk(unittest.TestCase):
    def setUp(self) -> None:
        HOST.reset()

    def test_json_like_serde(self) -> None:
        cases = [
            (3, "3"), (-7, "-7"), (1.0, "1.0"), (0.5, "0.5"), (1e-5, "0.00001"), (1e-7, "1e-7"), (1.5e300, "1.5e+300"),
            (1e16, "1e+16"), (123456789012345.6, "123456789012345.6"), (float("nan"), "null"), (True, "true"),
            (None, "null"), ("é\"\n\x01", '"é\\"\\n\\u0001"'),
        ]
        for value, text in cases:
            self.assertEqual(_json.dumps(value), text, repr(value))
        self.assertEqual(_json.dumps({"a": [1, 2.5, None], "b": {"c": "d"}}), '{"a":[1,2.5,null],"b":{"c":"d"}}')

    def test_map_and_raw_state(self) -> None:
        m = weir.state.Map("m")
        m.set("a", {"x": 1})
        m.set(b"b", [1, 2])
        self.assertEqual(m.get("a"), {"x": 1})
        self.assertEqual(m.update("a", lambda v: None), None)
        self.assertIsNone(m.get("a"))
        self.assertEqual(list(m.items()), [(b"b", [1, 2])])
        for i in range(600):
            weir.state.set(b"p/%04d" % i, b"v")
        self.assertEqual(sum(1 for _ in weir.state.scan_prefix(b"p/")), 600)
        self.assertEqual(len(weir.state.range(b"p/", b"p/0010")), 10)

    def test_class_transform_reject_fatal_and_discard(self) -> None:
        import types

        mod = types.ModuleType("app")

        class T(weir.Transform):
            def __init__(self, config: weir.Config) -> None:
                self.n = config.parse_or("n", weir.u32, 1)

            def process(self, record: weir.Record, out: weir.Emitter) -> None:
                out.emit(value=b"first", topic="t", headers=[("h", "v")])
                weir.state.set(b"k", b"v")
                if record.value == b"reject":
                    raise weir.Reject("no thanks")
                if record.value == b"fatal":
                    raise weir.Fatal("stop")
                out.forward(record)

        T.__module__ = "app"
        mod.T = T
        weir._transform._registered.clear()
        weir._export.bind(mod)
        h = weir._export.Handler()
        h.init([("n", "2")])
        out = decode(h.process(batch([{"value": "a", "headers": [("x", "1")]}, {"value": "reject"}, {"value": "b"}])))
        self.assertEqual(out["rejects"], [(1, "no thanks")])
        self.assertEqual([(o["source"], o["value"]) for o in out["outputs"]], [(0, b"first"), (0, b"a"), (2, b"first"), (2, b"b")])
        self.assertEqual(out["outputs"][1]["headers"], [("x", b"1")])
        with self.assertRaises(Err) as e:
            h.process(batch([{"value": "fatal"}]))
        self.assertEqual(e.exception.value, "stop")

    def test_timers_set_in_process_fire_in_on_timer(self) -> None:
        h = load(PLUGINS / "inactivity")
        h.init([("gap_ms", "1000")])
        out = decode(h.process(batch([{"key": "a", "value": "x", "timestamp": 5}, {"value": "no key"}])))
        self.assertEqual(out["rejects"], [(1, "record has no key")])
        self.assertEqual(HOST.timers, {b"a": (1005, weir.timers.EVENT_TIME)})
        out = decode(h.on_timer(fakehost.timer_batch([(b"a", 1005)])))
        self.assertEqual(out["outputs"][0]["key"], b"a")
        self.assertEqual(out["outputs"][0]["value"], b'{"records":1,"last":5,"alerts":1}')
        self.assertIsNone(out["outputs"][0]["timestamp"], "the timer's time is the default")
        self.assertEqual(weir.state.get(b"a:a"), b"1")

    def test_unchanged_input_headers_are_emitted_without_copies_and_changed_ones_with(self) -> None:
        import types

        mod = types.ModuleType("app")

        def keep(record: weir.Record, out: weir.Emitter) -> None:
            hs = record.headers
            out.emit(value="same", headers=hs)
            hs.append(("added", None))
            out.emit(value="more", headers=hs)

        keep.__module__ = "app"
        weir._transform._registered.clear()
        weir.transform(keep)
        weir._export.bind(mod)
        h = weir._export.Handler()
        h.init([])
        raw = h.process(batch([{"value": "a", "headers": [("x", "1"), ("n", None)]}]))
        out = decode(raw)
        self.assertEqual(out["outputs"][0]["headers"], [("x", b"1"), ("n", None)])
        self.assertEqual(out["outputs"][1]["headers"], [("x", b"1"), ("n", None), ("added", None)])
        self.assertEqual(len(raw.headers), 16 * (2 + 3), "the first output reuses the input's packed headers")

    def test_tables(self) -> None:
        HOST.set_table("prices", {b"p:%04d" % i: b"%d" % i for i in range(600)} | {b"q": b"last"})
        t = weir.tables.open("prices")
        self.assertIsInstance(t, weir.Table)
        self.assertEqual(t.get("p:0007"), b"7")
        self.assertEqual(t.get(bytearray(b"q")), b"last")
        self.assertIsNone(t.get(b"nope"))
        self.assertEqual(t.range(b"p:0598"), [(b"p:0598", b"598"), (b"p:0599", b"599"), (b"q", b"last")])
        self.assertEqual(t.range("p:0001", "p:0003"), [(b"p:0001", b"1"), (b"p:0002", b"2")])
        self.assertEqual(len(t.range(b"")), 256, "one page by default")
        self.assertEqual(len(t.range(b"", limit=3)), 3)
        scanned = list(t.scan_prefix("p:"))
        self.assertEqual(len(scanned), 600, "more than two pages")
        self.assertEqual(scanned[0], (b"p:0000", b"0"))
        self.assertEqual(scanned[-1], (b"p:0599", b"599"))
        self.assertEqual(weir.Table.open("prices").id, t.id)
        with self.assertRaises(weir.ConfigError) as e:
            weir.tables.open("users")
        self.assertEqual(str(e.exception), "no table `users`: the deployment declares `prices`")

    def test_config_helpers(self) -> None:
        c = weir.Config([("n", "1"), ("n", " 2 "), ("f", "2.5"), ("b", "true")])
        self.assertEqual(c.parse("n", weir.u64), 2)
        self.assertEqual(c.parse("f", weir.f64), 2.5)
        self.assertIs(c.parse("b", weir.boolean), True)
        self.assertEqual(list(c.items())[0], ("n", "1"))
        with self.assertRaises(weir.ConfigError):
            c.require("missing")
        with self.assertRaisesRegex(weir.ConfigError, "invalid float literal"):
            weir.Config([("x", "1_0")]).parse("x", weir.f64)

    def test_imports_after_init_raise_import_error(self) -> None:
        import sys

        import weir._runtime as rt

        finder = rt._NoImportsAtRunTime()
        sys.meta_path.insert(0, finder)  # type: ignore[arg-type]
        rt.live = True
        try:
            with self.assertRaisesRegex(ImportError, "cannot import `some_module_never_imported`"):
                import some_module_never_imported  # type: ignore[import-not-found]  # noqa: F401
            import json  # already imported: fine  # noqa: F401
        finally:
            rt.live = False
            sys.meta_path.remove(finder)  # type: ignore[arg-type]

    def test_print_goes_to_log(self) -> None:
        import sys

        weir.log._redirect_standard_streams()
        weir.log._live = True
        try:
            print("hello", "log")
            sys.stdout.flush()
        finally:
            weir.log._live = False
        self.assertIn(("info", "hello log"), HOST.logs)


if __name__ == "__main__":
    unittest.main()
