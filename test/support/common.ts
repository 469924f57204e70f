import { TRANSPORT_NAMES } from '../../src/transports/types';

/** The transports of the node contract: every suite that loops over them follows the one table. */
export const TRANSPORTS = TRANSPORT_NAMES;

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
