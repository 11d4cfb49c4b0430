// The transform and its export (see ../weir.js).

import { RECORD, i64At, wordsOf } from './_layout.js';
import { toBytes } from './bytes.js';
import { Config } from './config.js';
import { Emitter } from './emit.js';
import { Fatal, errorMessage } from './errors.js';
import { log } from './log.js';
import { Record } from './record.js';
import { Timer } from './timers.js';
import { WindowResult, windowFromId } from './windows.js';

/**
 * Optional base class for transforms: extend it and override `process`
 * (and `onWindow`, `reduce`, `merge` for windowed transforms, `onTimer`
 * for timers). The
 * constructor receives the {@link Config}.
 */
export class Transform {
  /** @param {Config} config */
  // eslint-disable-next-line no-unused-vars
  constructor(config) {}

  /**
   * Handles one record: emit outputs, read and write state, add to windows.
   * Throwing rejects the record; throwing {@link Fatal} stops the
   * deployment.
   * @param {Record} record
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  process(record, out) {
    throw new Fatal(`${this.constructor.name} does not implement process`);
  }

  /**
   * Turns a window result into outputs. The default emits nothing.
   * @param {WindowResult} result
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  onWindow(result, out) {}

  /**
   * Handles a timer set with {@link timers.set} that fired: emit outputs,
   * read and write state, set timers. Throwing drops the timer and counts
   * a failure. The default emits nothing.
   * @param {Timer} timer
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  onTimer(timer, out) {}
}

function isTransformClass(f) {
  return typeof f === 'function' && f.prototype != null && typeof f.prototype.process === 'function';
}

function emptyBatch() {
  return { data: new Uint8Array(0), records: new Uint8Array(0), headers: new Uint8Array(0), topics: [], rejects: [], windowAdds: [] };
}

/**
 * Builds the `weir:transform/handler` export from a plugin module; the
 * build calls it, plugins do not.
 *
 * @param {any} module the plugin module's namespace. Its default export (or
 *   else the module itself) is a Transform class (constructed with the
 *   config), a function `(record, out)`, or an object with `process` (and
 *   optionally `init(config)`, `onWindow`, `onTimer`, `reduce`, `merge`).
 * @internal
 */
export function createHandler(module) {
  const plugin = module !== null && typeof module === 'object' && module.default !== undefined ? module.default : module;
  let instance = null;
  // Whether the last `process` call's outputs referred to its input: then
  // the next call's output buffer starts with a copy of its input.
  let referencedInput = false;

  function current() {
    if (instance === null) throw 'weir: the host called the transform before init';
    return instance;
  }

  function folded(name, f) {
    try {
      return toBytes(f());
    } catch (e) {
      log.error(`${name} failed: ${errorMessage(e)}`);
      throw e;
    }
  }

  return {
    init(config) {
      try {
        const cfg = new Config(config);
        let t;
        if (isTransformClass(plugin)) t = new plugin(cfg);
        else if (typeof plugin === 'function') t = { process: plugin };
        else if (plugin !== null && typeof plugin === 'object' && typeof plugin.process === 'function') {
          if (typeof plugin.init === 'function') plugin.init(cfg);
          t = plugin;
        } else {
          throw new Error('the plugin must `export default` a class or object with a `process(record, out)` method, or a function `(record, out)`');
        }
        instance = t;
      } catch (e) {
        throw errorMessage(e);
      }
    },

    process(batch) {
      const t = current();
      const words = wordsOf(batch.records);
      const n = words.length / RECORD;
      const ctx = { data: batch.data, records: words, headers: wordsOf(batch.headers), topic: batch.topic, partition: batch.partition };
      const out = new Emitter(batch.data, n * RECORD, referencedInput);
      for (let i = 0; i < n; i++) {
        const record = new Record(ctx, i);
        out._begin(i, i64At(words, i * RECORD + 2));
        try {
          t.process(record, out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      referencedInput = out._base >= 0;
      return out._finish();
    },

    onWindow(batch) {
      const t = current();
      if (typeof t.onWindow !== 'function') return emptyBatch();
      const results = batch.results;
      const out = new Emitter(batch.data, results.length << 5, false);
      for (let i = 0; i < results.length; i++) {
        const raw = results[i];
        out._begin(i, Number(raw.end));
        try {
          t.onWindow(new WindowResult(batch.data, raw), out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      return out._finish();
    },

    onTimer(batch) {
      const t = current();
      if (typeof t.onTimer !== 'function') return emptyBatch();
      const fired = batch.timers;
      const out = new Emitter(batch.data, fired.length * RECORD, false);
      for (let i = 0; i < fired.length; i++) {
        const f = fired[i];
        out._begin(i, Number(f.at));
        try {
          t.onTimer(new Timer(batch.data.subarray(f.key.start, f.key.start + f.key.len), f.at, f.clock), out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      if (out._adds.length > 0) throw 'onTimer may not add to windows';
      return out._finish();
    },

    reduce(window, key, acc, values) {
      const t = current();
      return folded('reduce', () => {
        if (typeof t.reduce !== 'function') throw new Error(`window ${window} uses a custom aggregation but the transform does not implement \`reduce\``);
        return t.reduce(windowFromId(window), key, acc ?? null, values);
      });
    },

    merge(window, key, a, b) {
      const t = current();
      return folded('merge', () => {
        if (typeof t.merge !== 'function') throw new Error(`window ${window} uses a custom session aggregation but the transform does not implement \`merge\``);
        return t.merge(windowFromId(window), key, a, b);
      });
    },
  };
}
