// Config (see ../weir.js).

export const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Rust's integer `from_str`, with its error messages. */
function parseInteger(text, signed, min, max) {
  if (text === '') throw new Error('cannot parse integer from empty string');
  let digits = text;
  let negative = false;
  if (text === '+' || text === '-') throw new Error('invalid digit found in string');
  if (text[0] === '+') digits = text.slice(1);
  else if (text[0] === '-' && signed) {
    digits = text.slice(1);
    negative = true;
  }
  if (!/^[0-9]+$/.test(digits)) throw new Error('invalid digit found in string');
  const n = negative ? -BigInt(digits) : BigInt(digits);
  if (n > max) throw new Error('number too large to fit in target type');
  if (n < min) throw new Error('number too small to fit in target type');
  return Number(n);
}

/**
 * Parsers for {@link Config#parse}, with Rust's `FromStr` behaviour and
 * error messages (so validation messages match the Rust SDK's).
 */
export const parsers = Object.freeze({
  /** @param {string} s */
  u64: (s) => parseInteger(s, false, 0n, U64_MAX),
  /** @param {string} s */
  i64: (s) => parseInteger(s, true, I64_MIN, I64_MAX),
  /** @param {string} s */
  u32: (s) => parseInteger(s, false, 0n, 0xffffffffn),
  /** @param {string} s */
  f64: (s) => {
    const m = /^([+-]?)(?:(inf|infinity)|(nan)|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))$/i.exec(s);
    if (!m) throw new Error('invalid float literal');
    if (m[3]) return NaN;
    const v = m[2] ? Infinity : Number(m[4]);
    return m[1] === '-' ? -v : v;
  },
  /** @param {string} s */
  bool: (s) => {
    if (s === 'true') return true;
    if (s === 'false') return false;
    throw new Error('provided string was not `true` or `false`');
  },
  /** @param {string} s */
  string: (s) => s,
});

/**
 * The deployment's configuration: the key/value strings of its spec (or of
 * `weir test -c KEY=VALUE`). When a key is given twice the last value wins.
 */
export class Config {
  /** @param {Array<[string, string]>} entries */
  constructor(entries) {
    /** @internal */
    this._entries = entries;
  }

  /**
   * The value of `key`, or `undefined`.
   * @param {string} key
   * @returns {string | undefined}
   */
  get(key) {
    const e = this._entries;
    for (let i = e.length - 1; i >= 0; i--) if (e[i][0] === key) return e[i][1];
    return undefined;
  }

  /** @param {string} key */
  has(key) {
    return this.get(key) !== undefined;
  }

  /**
   * The value of `key`; throws ``config `key` is required`` when unset.
   * @param {string} key
   * @returns {string}
   */
  require(key) {
    const v = this.get(key);
    if (v === undefined) throw new Error(`config \`${key}\` is required`);
    return v;
  }

  /**
   * The value of `key` (trimmed) passed through `parser`; `undefined` when
   * unset. A parser error becomes ``config `key` = `value`: message``.
   *
   * @template T
   * @param {string} key
   * @param {(text: string) => T} parser e.g. one of {@link parsers}
   * @returns {T | undefined}
   */
  parse(key, parser) {
    const v = this.get(key);
    if (v === undefined) return undefined;
    try {
      return parser(v.trim());
    } catch (e) {
      throw new Error(`config \`${key}\` = \`${v}\`: ${errorMessage(e)}`);
    }
  }

  /**
   * Like {@link Config#parse}, with `fallback` for an unset key.
   * @template T
   * @param {string} key
   * @param {(text: string) => T} parser
   * @param {T} fallback
   * @returns {T}
   */
  parseOr(key, parser, fallback) {
    const v = this.parse(key, parser);
    return v === undefined ? fallback : v;
  }

  /**
   * An unsigned integer (Rust `u64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  u64(key, fallback) {
    return this.parseOr(key, parsers.u64, fallback);
  }

  /**
   * A signed integer (Rust `i64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  i64(key, fallback) {
    return this.parseOr(key, parsers.i64, fallback);
  }

  /**
   * A number (Rust `f64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  number(key, fallback) {
    return this.parseOr(key, parsers.f64, fallback);
  }

  /**
   * `true` or `false`, or `fallback` when unset.
   * @param {string} key
   * @param {boolean} [fallback]
   */
  bool(key, fallback) {
    return this.parseOr(key, parsers.bool, fallback);
  }

  /**
   * Every entry in spec order, duplicates included.
   * @returns {IterableIterator<[string, string]>}
   */
  [Symbol.iterator]() {
    return this._entries[Symbol.iterator]();
  }

  /** Every entry whose key starts with `prefix`, as `[rest of key, value]`. */
  withPrefix(prefix) {
    const result = [];
    for (const [k, v] of this._entries) if (k.startsWith(prefix)) result.push([k.slice(prefix.length), v]);
    return result;
  }
}
