/** What every node type of the package does with its settings and its failures. */

import type { NodeAPI } from 'node-red';
import { MAX_DEVICE_NAME_LENGTH } from '../../protocol/request';
import { findBadCharacter, quotePrefix } from '../../protocol/text';

/** A number from the node's settings, at least `min`; the default when unset or not a number. */
export function numberSetting(value: unknown, fallback: number, min: number): number {
  const n = Number(value);
  return value === undefined || value === '' || !Number.isFinite(n) ? fallback : Math.max(min, n);
}

/** The device name for an error text: as given when clean, else quoted, escaped and cut short. */
export function nameForText(name: string): string {
  const clean = name.length <= MAX_DEVICE_NAME_LENGTH && findBadCharacter(name) === undefined;
  return clean ? name : quotePrefix(name, 64);
}

/**
 * Ends a message with an error for Catch nodes, given as text as the core nodes give theirs: the
 * debug sidebar shows a text whole, but an Error as a folded object whose first words are cut.
 */
export function failWithText(done: (err?: Error) => void, text: string): void {
  (done as unknown as (err: string) => void)(text);
}

/** Node-RED's default for how long a node may take to close. */
const NODE_CLOSE_TIMEOUT_MS = 15_000;

/**
 * How long requests already sent may go on after close: most of Node-RED's close timeout, the
 * rest left for keeping their answers and releasing what the node holds.
 */
export function closeGraceMs(RED: NodeAPI): number {
  const setting = Number((RED.settings as { nodeCloseTimeout?: unknown }).nodeCloseTimeout);
  const limit = setting > 0 ? setting : NODE_CLOSE_TIMEOUT_MS;
  return Math.max(0, limit - Math.min(3000, limit / 3));
}
