/**
 * Types of the Weir JavaScript SDK (`import ... from 'weir'`); the
 * implementation and longer docs are in weir.js. The WIT world these wrap
 * is declared in world.d.ts.
 *
 * A plugin's `index.js` / `index.ts` default-exports its transform: a class
 * (constructed once per sandbox instance with the {@link Config}), a
 * function `(record, out) => void`, or an object with `process` and
 * optionally `init(config)`. Named exports `process`, `init`, `onWindow`,
 * `reduce` and `merge` work too.
 */

/** Bytes, or a string taken as its UTF-8 encoding. */
export type BytesLike = string | Uint8Array;

/** `value` as bytes (strings are UTF-8 encoded; a Uint8Array is returned as is). */
export function toBytes(value: string | ArrayBufferView | ArrayBuffer): Uint8Array;
/** `bytes` as UTF-8 text, or `null` when not valid UTF-8. */
export function utf8(bytes: Uint8Array): string | null;
/** `bytes` as UTF-8 text, invalid sequences replaced by U+FFFD. */
export function utf8Lossy(bytes: Uint8Array): string;

/** Rust's `<[u8]>::to_ascii_uppercase`: a copy with a..z upper-cased, other bytes kept. */
export function asciiUpperCase(value: BytesLike): Uint8Array;
/** Rust's `<[u8]>::to_ascii_lowercase`. */
export function asciiLowerCase(value: BytesLike): Uint8Array;

/** Thrown from `process`/`onWindow`: rejects the current record with this message. */
export class Reject extends Error {
  constructor(message: string);
}

/** Thrown from `process`/`onWindow`: stops the deployment on this partition. */
export class Fatal extends Error {
  constructor(message: string);
}

/** The message Weir reports for a thrown value. */
export function errorMessage(error: unknown): string;

type LogFn = (...args: unknown[]) => void;
/** Log lines, recorded by the host with the deployment's name. `console.*` writes here too. */
export const log: Readonly<{ trace: LogFn; debug: LogFn; info: LogFn; warn: LogFn; error: LogFn }>;

/** Parsers with Rust's `FromStr` syntax and error messages, for {@link Config.parse}. */
export const parsers: Readonly<{
  u64(text: string): number;
  i64(text: string): number;
  u32(text: string): number;
  f64(text: string): number;
  bool(text: string): boolean;
  string(text: string): string;
}>;

/** The deployment's configuration (the last value of a repeated key wins). */
export class Config implements Iterable<[string, string]> {
  constructor(entries: Array<[string, string]>);
  get(key: string): string | undefined;
  has(key: string): boolean;
  /** Throws ``config `key` is required`` when unset. */
  require(key: string): string;
  /** `parser(value.trim())`, `undefined` when unset; errors read ``config `key` = `value`: message``. */
  parse<T>(key: string, parser: (text: string) => T): T | undefined;
  parseOr<T>(key: string, parser: (text: string) => T, fallback: T): T;
  u64(key: string): number | undefined;
  u64(key: string, fallback: number): number;
  i64(key: string): number | undefined;
  i64(key: string, fallback: number): number;
  number(key: string): number | undefined;
  number(key: string, fallback: number): number;
  bool(key: string): boolean | undefined;
  bool(key: string, fallback: boolean): boolean;
  /** Entries whose key starts with `prefix`, as `[rest of key, value]`, in spec order. */
  withPrefix(prefix: string): Array<[string, string]>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

/** A header: name and value (`null` for a null value). */
export type Header = [name: string, value: Uint8Array | null];

/** One input record, a view of the batch (bytes valid during the call and read-only; `.slice()` to keep or change). */
export class Record {
  private constructor();
  /** Position of the record in its batch. */
  readonly index: number;
  /** `null` for a null key. */
  readonly key: Uint8Array | null;
  /** `null` for a null value (a tombstone). */
  readonly value: Uint8Array | null;
  /** `null` when absent or not UTF-8. */
  readonly keyText: string | null;
  /** `null` when absent or not UTF-8. */
  readonly valueText: string | null;
  /** The value parsed as JSON; throws {@link Reject} when absent or invalid. */
  valueJson<T = any>(): T;
  /** Event time, ms since the Unix epoch. */
  readonly timestamp: number;
  readonly offset: number;
  readonly topic: string;
  readonly partition: number;
  readonly headerCount: number;
  /** Headers in order. */
  readonly headers: Header[];
  /** First header called `name`: `undefined` when none, `null` for a null value. */
  header(name: string): Uint8Array | null | undefined;
  headerText(name: string): string | null;
}

/** One record to produce; every field optional. */
export interface Output {
  /** `null`/absent: a null key. */
  key?: BytesLike | null;
  /** `null`/absent: a null value. */
  value?: BytesLike | null;
  /** Absent: the deployment's default output topic. */
  topic?: string | null;
  headers?: Array<[string, BytesLike | null]> | { [name: string]: BytesLike | null } | null;
  /** Event time in ms; absent: the input record's (a window result's end). */
  timestamp?: number | bigint | null;
}

/** Collects the outputs and window additions of the record (or window result) being handled. */
export class Emitter {
  private constructor();
  emit(output: Output): void;
  /** Emits `record` (key, value, headers, timestamp) with `changes` applied, to the default topic unless `changes.topic`. */
  forward(record: Record, changes?: Output): void;
  addToWindow(window: Window, key: BytesLike, number: number): void;
  addToWindowAt(window: Window, key: BytesLike, timestamp: number | bigint, number: number): void;
  addCustomToWindow(window: Window, key: BytesLike, value: BytesLike): void;
  addCustomToWindowAt(window: Window, key: BytesLike, timestamp: number | bigint, value: BytesLike): void;
  /** Timestamp of the record (or window result) being handled, ms. */
  readonly timestamp: number;
}

export interface SetOptions {
  /** Expire the entry `ttlMs` of stream time (event time) after this write. */
  ttlMs?: number | bigint;
}

/** A named collection of JSON values in state (compatible with the Rust SDK's `state::Map`). */
export class StateMap<V = any> {
  constructor(name: string);
  readonly name: string;
  get(key: BytesLike): V | undefined;
  set(key: BytesLike, value: V, options?: SetOptions): void;
  delete(key: BytesLike): void;
  /** Stores `f(old)`; `undefined`/`null` deletes. Returns the new value. */
  update(key: BytesLike, f: (old: V | undefined) => V | undefined | null): V | undefined;
  entries(): Generator<[Uint8Array, V]>;
  [Symbol.iterator](): Generator<[Uint8Array, V]>;
}

/** Keyed state of this deployment on the current partition. */
export const state: Readonly<{
  get(key: BytesLike): Uint8Array | null;
  set(key: BytesLike, value: BytesLike, options?: SetOptions): void;
  delete(key: BytesLike): void;
  /** Up to `limit` entries with `start <= key < end`, in key order. */
  range(start: BytesLike, end: BytesLike | null | undefined, limit: number): Array<[Uint8Array, Uint8Array]>;
  /** Every entry whose key starts with `prefix`, in key order (paged). */
  scanPrefix(prefix: BytesLike): Generator<[Uint8Array, Uint8Array]>;
  Map: typeof StateMap;
}>;

/**
 * A read-only table the deployment declares (world 0.2.1): the latest value
 * of each key of a compacted topic, kept up to date by the host. Open it in
 * the constructor; read it in `process`, `onWindow` and `onTimer`. A record
 * sees the table as loaded when it is processed, not as of its timestamp.
 */
export class Table {
  private constructor();
  /** The table the deployment declares as `name`; throws an Error with the host's message (naming the declared tables). */
  static open(name: string): Table;
  readonly name: string;
  /** The host's id of the table. */
  readonly id: number;
  /** The value of `key`, or `null`. */
  get(key: BytesLike): Uint8Array | null;
  /** Up to `limit` entries with `start <= key < end`, in key order. */
  range(start: BytesLike, end: BytesLike | null | undefined, limit: number): Array<[Uint8Array, Uint8Array]>;
  /** Every entry whose key starts with `prefix`, in key order (paged). */
  scanPrefix(prefix: BytesLike): Generator<[Uint8Array, Uint8Array]>;
}

/** Tables the deployment declares (world 0.2.1). */
export const tables: Readonly<{
  /** {@link Table.open}: throws the host's message for a name the deployment does not declare. */
  open(name: string): Table;
  Table: typeof Table;
}>;

/** A declared windowed aggregation (the same object is passed back, compare with `===`). */
export class Window {
  private constructor();
  readonly id: number;
  readonly name: string | undefined;
}

export type Aggregation = 'count' | 'sum' | 'min' | 'max' | 'mean' | 'custom';

/** Builder of a window aggregation; each method returns a new spec. */
export class WindowSpec {
  private constructor();
  static tumbling(sizeMs: number | bigint): WindowSpec;
  static hopping(sizeMs: number | bigint, advanceMs: number | bigint): WindowSpec;
  static sliding(maxDifferenceMs: number | bigint): WindowSpec;
  static session(gapMs: number | bigint): WindowSpec;
  static countTumbling(count: number | bigint): WindowSpec;
  static countHopping(count: number | bigint, step: number | bigint): WindowSpec;
  graceMs(ms: number | bigint): WindowSpec;
  aggregation(aggregation: Aggregation): WindowSpec;
  count(): WindowSpec;
  sum(): WindowSpec;
  min(): WindowSpec;
  max(): WindowSpec;
  mean(): WindowSpec;
  custom(): WindowSpec;
  emitOnClose(): WindowSpec;
  emitOnUpdate(): WindowSpec;
  idleCloseMs(ms: number | bigint): WindowSpec;
  /** Declares the aggregation (call while the transform is built); throws the host's message if refused. */
  define(name: string): Window;
}

/** The aggregate of one window. */
export class WindowResult {
  private constructor();
  readonly window: Window;
  readonly key: Uint8Array;
  readonly keyText: string | null;
  /** First instant, ms. */
  readonly start: number;
  /** Exclusive end (tumbling, hopping); inclusive last instant (sliding, session). */
  readonly end: number;
  readonly count: number;
  /** The count, sum, min, max or mean (0 for custom). */
  readonly value: number;
  /** A custom aggregation's accumulator. */
  readonly custom: Uint8Array | null;
  readonly closed: boolean;
}

export type Clock = 'event-time' | 'wall-clock';

/** A timer that fired, handed to `onTimer`. */
export class Timer {
  private constructor();
  readonly key: Uint8Array;
  readonly keyText: string | null;
  /** The time it was set for, ms since the epoch. */
  readonly at: number;
  readonly clock: Clock;
}

/** Timers of the current partition: at most one per key; `onTimer` receives them when they fire. */
export const timers: Readonly<{
  /** Sets (replaces) the timer of `key` for `at` ms on `clock` (default `'event-time'`). */
  set(key: BytesLike, at: number | bigint, clock?: Clock): void;
  cancel(key: BytesLike): void;
  get(key: BytesLike): { at: number; clock: Clock } | null;
  /** The partition's stream time, or the host's wall clock, ms. */
  now(clock?: Clock): number;
}>;

/** What a transform implements (the class form is constructed with the Config). */
export interface TransformLike {
  process(record: Record, out: Emitter): void;
  onWindow?(result: WindowResult, out: Emitter): void;
  /** Handles a fired timer; throwing drops it. */
  onTimer?(timer: Timer, out: Emitter): void;
  /** Folds `values` into a custom aggregation's accumulator (`acc` null for a new window). */
  reduce?(window: Window, key: Uint8Array, acc: Uint8Array | null, values: Uint8Array[]): BytesLike;
  /** Combines two session accumulators (`a` is the earlier session). */
  merge?(window: Window, key: Uint8Array, a: Uint8Array, b: Uint8Array): BytesLike;
}

/** Optional base class for transforms. */
export class Transform implements TransformLike {
  constructor(config: Config);
  process(record: Record, out: Emitter): void;
  onWindow(result: WindowResult, out: Emitter): void;
  onTimer(timer: Timer, out: Emitter): void;
}

/** Used by the build; plugins do not call it. */
export function createHandler(module: unknown): import('weir:transform/handler@0.2.1').Handler;
