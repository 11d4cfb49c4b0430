# Measures, for `weir run` killed with SIGKILL and started again at once,
# the time from the restart to its first new output, while a producer
# writes ~500 records/s to the input (BENCHMARKS.md, issue 29). Needs a
# broker on 127.0.0.1:19510 (scripts/kafka --port 19510 --data DIR) and
# confluent-kafka ($WEIR_CACHE/venv):
#   $WEIR_CACHE/venv/bin/python host/bench/restart/measure.py ROUNDS WEIR_BINARY CONFIG
# CONFIG runs deployment `up` (inputs ["k9.in"], output "k9.out"); see
# weir.toml beside this script.
import os, signal, subprocess, sys, tempfile, threading, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
B = "127.0.0.1:19510"
WEIR, CONFIG = sys.argv[2], sys.argv[3]
a = AdminClient({"bootstrap.servers": B})
for f in a.create_topics([NewTopic(t, 4, 1) for t in ("k9.in", "k9.out", "up.dlq")]).values():
    try: f.result()
    except Exception as e: print("topic:", e)
RUN = str(int(time.time()))
stop = threading.Event()
produced = [0]
def produce():
    p = Producer({"bootstrap.servers": B, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        p.produce("k9.in", key=str(i % 100), value=f"v{RUN}x{i}")
        i += 1
        produced[0] = i
        if i % 50 == 0:
            p.poll(0); time.sleep(0.1)
    p.flush()
threading.Thread(target=produce, daemon=True).start()
c = Consumer({"bootstrap.servers": B, "group.id": "k9-reader-" + RUN, "auto.offset.reset": "latest"})
c.subscribe(["k9.out"])
def start():
    log = open(os.path.join(tempfile.gettempdir(), "weir-restart-bench.log"), "a")
    return subprocess.Popen([WEIR, "run", "--config", CONFIG], stdout=log, stderr=subprocess.STDOUT)
w = start()
def first_output(after, timeout, past=-1):
    # The first output of an input produced after `past` (so by a host
    # started after the kill), from `after` on.
    end = time.time() + timeout
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            ts = time.time()
            run, _, i = m.value().decode()[1:].partition("X")
            if ts >= after and run == RUN and int(i) > past:
                return ts
    return None
t0 = time.time()
got = first_output(t0, 120)
print(f"first start: first output after {got - t0:.1f} s" if got else "no output")
results = []
for round in range(int(sys.argv[1])):
    time.sleep(10)
    w.send_signal(signal.SIGKILL); w.wait()
    past = produced[0]
    t = time.time()
    w = start()
    got = first_output(t, 180, past)
    results.append(got - t if got else None)
    print(f"restart {round + 1}: first output {got - t:.1f} s after the restart" if got else "restart: no output in 180 s", flush=True)
w.send_signal(signal.SIGTERM); w.wait()
stop.set(); c.close()
print("results", results)
