/**
 * The WIT world `weir:transform/plugin@0.2.1` (../../wit/*.wit) as
 * componentize-js presents it to JavaScript: the imports are ES modules
 * named after their interfaces, and the module given to componentize-js
 * exports `handler`. WIT `u64`/`s64` are `bigint`, `option<T>` is
 * `T | undefined`, `list<u8>` is `Uint8Array`, a `result<T, string>`
 * returned by an import throws an Error whose `payload` is the string, and
 * an export returns `err` by throwing a string. Plugins use the SDK
 * (weir.d.ts) instead.
 */

declare module 'weir:transform/types@0.2.1' {
  export interface Span {
    start: number;
    len: number;
  }
  /** Packed record metadata: see wit/0.2/types.wit for the layouts. */
  export interface InputBatch {
    topic: string;
    partition: number;
    data: Uint8Array;
    records: Uint8Array;
    headers: Uint8Array;
  }
  export interface Reject {
    source: number;
    message: string;
  }
  export interface WindowAdd {
    window: number;
    source: number;
    key: Span;
    timestamp: bigint;
    number: number;
    custom?: Span;
  }
  export interface OutputBatch {
    data: Uint8Array;
    records: Uint8Array;
    headers: Uint8Array;
    topics: string[];
    rejects: Reject[];
    windowAdds: WindowAdd[];
  }
}

declare module 'weir:transform/log@0.2.1' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  export function log(level: Level, message: string): void;
}

declare module 'weir:transform/state@0.2.1' {
  export interface Entry {
    key: Uint8Array;
    value: Uint8Array;
  }
  export function get(key: Uint8Array): Uint8Array | undefined;
  export function set(key: Uint8Array, value: Uint8Array, ttlMs: bigint | undefined): void;
  function _delete(key: Uint8Array): void;
  export { _delete as delete };
  export function range(start: Uint8Array, end: Uint8Array | undefined, limit: number): Entry[];
  export function prefix(prefix: Uint8Array, after: Uint8Array | undefined, limit: number): Entry[];
}

declare module 'weir:transform/windows@0.2.1' {
  import type { Span } from 'weir:transform/types@0.2.1';
  export interface Hopping {
    sizeMs: bigint;
    advanceMs: bigint;
  }
  export type WindowKind =
    | { tag: 'tumbling'; val: bigint }
    | { tag: 'hopping'; val: Hopping }
    | { tag: 'sliding'; val: bigint }
    | { tag: 'session'; val: bigint };
  export type Aggregation = 'count' | 'sum' | 'min' | 'max' | 'mean' | 'custom';
  export type EmitMode = 'on-update' | 'on-close';
  export interface WindowSpec {
    kind: WindowKind;
    graceMs: bigint;
    aggregation: Aggregation;
    emit: EmitMode;
    idleCloseMs?: bigint;
  }
  /** Throws an Error with `payload` (the host's message) when refused. */
  export function define(name: string, spec: WindowSpec): number;
  export interface WindowResult {
    window: number;
    key: Span;
    start: bigint;
    end: bigint;
    count: bigint;
    value: number;
    custom?: Span;
    closed: boolean;
  }
  export interface WindowBatch {
    data: Uint8Array;
    results: WindowResult[];
  }
}

declare module 'weir:transform/timers@0.2.1' {
  import type { Span } from 'weir:transform/types@0.2.1';
  export type Clock = 'event-time' | 'wall-clock';
  export function set(key: Uint8Array, at: bigint, clock: Clock): void;
  export function cancel(key: Uint8Array): void;
  export function get(key: Uint8Array): [bigint, Clock] | undefined;
  export function now(clock: Clock): bigint;
  export interface Fired {
    key: Span;
    at: bigint;
    clock: Clock;
  }
  export interface TimerBatch {
    data: Uint8Array;
    timers: Fired[];
  }
}

/** New in 0.2.1; imported only by components of plugins that use tables. */
declare module 'weir:transform/tables@0.2.1' {
  import type { Entry } from 'weir:transform/state@0.2.1';
  /** Throws an Error with `payload` (the host's message, naming the declared tables) for an unknown name. */
  export function open(name: string): number;
  export function get(table: number, key: Uint8Array): Uint8Array | undefined;
  export function range(table: number, start: Uint8Array, end: Uint8Array | undefined, limit: number): Entry[];
  export function prefix(table: number, prefix: Uint8Array, after: Uint8Array | undefined, limit: number): Entry[];
}

declare module 'weir:transform/handler@0.2.1' {
  import type { InputBatch, OutputBatch } from 'weir:transform/types@0.2.1';
  import type { WindowBatch } from 'weir:transform/windows@0.2.1';
  import type { TimerBatch } from 'weir:transform/timers@0.2.1';
  /** The `handler` export; functions returning `result` throw a string for `err`. */
  export interface Handler {
    init(config: Array<[string, string]>): void;
    process(batch: InputBatch): OutputBatch;
    onWindow(batch: WindowBatch): OutputBatch;
    onTimer(batch: TimerBatch): OutputBatch;
    reduce(window: number, key: Uint8Array, acc: Uint8Array | undefined, values: Uint8Array[]): Uint8Array;
    merge(window: number, key: Uint8Array, a: Uint8Array, b: Uint8Array): Uint8Array;
  }
}
