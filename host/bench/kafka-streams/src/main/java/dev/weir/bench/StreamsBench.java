package dev.weir.bench;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * One Kafka Streams application, as `weir bench streams` runs it beside Weir
 * on the same input and broker:
 *
 *   StreamsBench BOOTSTRAP map|count INPUT OUTPUT APPLICATION_ID STATE_DIR THREADS COMMIT_MS
 *
 * map: every value upper-cased (ASCII), as Weir's upper plugin. count: a
 * count per key in tumbling 1 s windows without grace, one final result per
 * window (suppressed until the window closes), as Weir's window-count plugin with
 * window=tumbling, size_ms=1000, emit=final. Prints "first" when the first
 * record reaches the topology, then runs until killed.
 */
public final class StreamsBench {
    public static void main(String[] args) throws InterruptedException {
        if (args.length != 8 && args.length != 9) {
            System.err.println("usage: StreamsBench BOOTSTRAP map|count INPUT OUTPUT APPLICATION_ID STATE_DIR THREADS COMMIT_MS [at_least_once|exactly_once_v2]");
            System.exit(2);
        }
        String bootstrap = args[0], mode = args[1], input = args[2], output = args[3];
        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[4]);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[6]));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[7]));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args.length == 9 ? args[8] : StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        AtomicBoolean first = new AtomicBoolean(true);
        StreamsBuilder builder = new StreamsBuilder();
        switch (mode) {
            case "map" -> {
                KStream<byte[], byte[]> in = builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()));
                in.peek((k, v) -> announceFirst(first))
                  .mapValues(StreamsBench::upper)
                  .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
            }
            case "count" -> {
                KStream<String, String> in = builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));
                in.peek((k, v) -> announceFirst(first))
                  .groupByKey()
                  .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(1)))
                  .count()
                  // Final results as stream time passes each window's end.
                  // (EmitStrategy.onWindowClose() checks for closed windows
                  // at most once a second of wall-clock time, and only when
                  // a record arrives: the last windows would never close.)
                  .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                  .toStream()
                  .map((w, n) -> KeyValue.pair(w.key(), "{\"start\":" + w.window().start() + ",\"end\":" + w.window().end() + ",\"count\":" + n + "}"))
                  .to(output, Produced.with(Serdes.String(), Serdes.String()));
            }
            default -> {
                System.err.println("mode must be map or count, not " + mode);
                System.exit(2);
            }
        }
        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            stopped.countDown();
        }));
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        stopped.await();
    }

    private static void announceFirst(AtomicBoolean first) {
        if (first.get() && first.compareAndSet(true, false)) {
            System.out.println("first");
            System.out.flush();
        }
    }

    private static byte[] upper(byte[] v) {
        if (v == null) {
            return null;
        }
        byte[] out = v.clone();
        for (int i = 0; i < out.length; i++) {
            if (out[i] >= 'a' && out[i] <= 'z') {
                out[i] -= 32;
            }
        }
        return out;
    }
}
