// Logging (see ../weir.js).

import { log as witLog } from 'weir:transform/log@0.2.1';
import { errorMessage } from './errors.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function inspect(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${errorMessage(value)}\n${value.stack}` : errorMessage(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `Uint8Array(${value.length}) [${value.slice(0, 64).join(', ')}${value.length > 64 ? ', ...' : ''}]`;
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v));
    } catch {
      return String(value);
    }
  }
  return String(value);
}

function logAt(level) {
  return (...args) => witLog(level, args.length === 1 ? inspect(args[0]) : args.map(inspect).join(' '));
}

/**
 * Log lines, recorded by the host with the deployment's name (and rate
 * limited). Arguments are joined with spaces; non-strings are shown as
 * JSON. `console.log/info/debug/warn/error/trace` write here too.
 *
 * @type {{ trace(...args: unknown[]): void, debug(...args: unknown[]): void, info(...args: unknown[]): void, warn(...args: unknown[]): void, error(...args: unknown[]): void }}
 */
export const log = /** @type {any} */ (Object.freeze(Object.fromEntries(LEVELS.map((l) => [l, logAt(l)]))));

// With the `stdio` feature disabled, console output would go nowhere.
for (const [method, level] of [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['trace', 'trace'], ['warn', 'warn'], ['error', 'error']]) {
  try {
    globalThis.console[method] = log[level];
  } catch {
    // a read-only console keeps its own methods
  }
}
