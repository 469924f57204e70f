/** Small text helpers for error messages that must stay short and never leak a secret. */

/** C0 controls, DEL and C1 controls. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** A UTF-16 surrogate that is not part of a pair: malformed Unicode the server cannot store. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export interface BadCharacter {
  /** Index in UTF-16 code units, as String.prototype.indexOf counts. */
  index: number;
  /** e.g. "U+000A (a control character)". */
  description: string;
}

/** The first character a name or credential must not contain, or undefined when clean. */
export function findBadCharacter(value: string): BadCharacter | undefined {
  const control = CONTROL_CHARACTER.exec(value);
  const surrogate = LONE_SURROGATE.exec(value);
  if (control && (!surrogate || control.index < surrogate.index)) {
    return {
      index: control.index,
      description: `${codePointLabel(control[0])} (a control character)`,
    };
  }
  if (surrogate) {
    return {
      index: surrogate.index,
      description: `${codePointLabel(surrogate[0])} (an unpaired surrogate, malformed Unicode)`,
    };
  }
  return undefined;
}

function codePointLabel(character: string): string {
  return `U+${(character.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * A quoted, escaped prefix of a non-secret value for an error message: control characters and
 * lone surrogates become \uXXXX escapes and long values are cut with an ellipsis.
 */
export function quotePrefix(value: string, maxCharacters = 24): string {
  // Cut before splitting into code points (two code units at most each): a flow may hand over
  // hundreds of megabytes, and an array of all their code points would take gigabytes.
  const head = value.slice(0, 2 * maxCharacters + 2);
  const characters = Array.from(head);
  const shown = characters.slice(0, maxCharacters).join('');
  const escaped = shown.replace(
    new RegExp(`${CONTROL_CHARACTER.source}|${LONE_SURROGATE.source}|["\\\\]`, 'g'),
    (c) =>
      c === '"' || c === '\\' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  const cut = characters.length > maxCharacters || head.length < value.length;
  return `"${escaped}${cut ? '…' : ''}"`;
}

/** What kind of value a flow gave, in words: "a number", "null", "an array"... */
export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing (undefined)';
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value)) return 'a Buffer';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    case 'bigint':
      return 'a bigint';
    case 'symbol':
      return 'a symbol';
    case 'function':
      return 'a function';
    default:
      return 'an object';
  }
}

/**
 * A status or type name as the server or a flow gave it: quoted when it looks like an enum word,
 * otherwise only described, since a generated token (letters and digits) must never be repeated.
 */
export function describeWord(value: unknown): string {
  if (typeof value !== 'string') return describeType(value);
  const enumLike = /^[A-Za-z_]+$/.test(value) || /^[A-Z0-9]+(?:_[A-Z0-9]+)+$/.test(value);
  return enumLike && value.length <= 32 ? `"${value}"` : 'an unrecognised text';
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value)
  );
}

/** Reads a field only when the object itself holds it (never one inherited from a prototype). */
export function ownField(object: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/**
 * Server-supplied text we are willing to repeat: short, plain words and punctuation only. Quotes,
 * braces and equals signs are refused because a parser's complaint may quote our request body;
 * words mixing letters and digits are refused because they may be a token; and any text holding
 * one of `avoid` (the secrets we sent) is refused outright.
 */
export function safeServerText(
  value: unknown,
  avoid: readonly string[] = [],
  maxCharacters = 120,
): string | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text.length === 0 || text.length > maxCharacters) return undefined;
  if (!/^[A-Za-z0-9 .,:;!?()/_-]+$/.test(text)) return undefined;
  const words = text.split(/[\s.,:;!?()/]+/).filter((word) => word.length > 0);
  if (!words.every((word) => /^(?:[A-Za-z]{1,20}(?:[-_][A-Za-z]{1,20})*|\d{1,6})$/.test(word))) {
    return undefined;
  }
  return avoid.some((secret) => secret.length >= 4 && text.includes(secret)) ? undefined : text;
}

/**
 * For logs: at most the first two characters of a secret, then an ellipsis. Short values show
 * fewer (or none), so a mask never gives away a large part of a secret.
 */
export function maskSecret(value: string): string {
  const characters = Array.from(String(value).slice(0, 16));
  const shown = characters.length >= 8 ? 2 : characters.length >= 4 ? 1 : 0;
  const prefix = characters
    .slice(0, shown)
    .map((c) => (CONTROL_CHARACTER.test(c) || LONE_SURROGATE.test(c) ? '?' : c))
    .join('');
  return `${prefix}…`;
}

/** Choices in words, for a message that lists them: "mqtt, http or coap". */
export function orList(choices: readonly string[]): string {
  return choices.length < 2
    ? choices.join('')
    : `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}`;
}
