// Errors (see ../weir.js).

/**
 * Thrown from `process` or `onWindow`: rejects the current record with this
 * message (the deployment's failure policy applies: dead-letter, skip or
 * stop). Any other exception rejects the record too; this class only makes
 * the intent explicit and keeps the message free of an error-type prefix.
 */
export class Reject extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Reject';
  }
}

/**
 * Thrown from `process` or `onWindow`: stops the deployment on this
 * partition with this message, without consuming further. For problems no
 * record can fix.
 */
export class Fatal extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Fatal';
  }
}

/**
 * The message reported for a thrown value: the message of `Reject`,
 * `Fatal` and plain `Error`s; `Name: message` for other error classes
 * (`TypeError: x is undefined`); `String(value)` for anything else.
 *
 * @param {unknown} e
 * @returns {string}
 */
export function errorMessage(e) {
  try {
    if (e instanceof Error) {
      if (e instanceof Reject || e instanceof Fatal || e.name === 'Error' || !e.name) return String(e.message);
      return `${e.name}: ${e.message}`;
    }
    return String(e);
  } catch {
    return 'unprintable exception';
  }
}
