import type { TransportName } from '../../src/transports/types';

/** The transports of the node contract, in the order tests run them. */
export const TRANSPORTS: readonly TransportName[] = ['mqtt', 'http', 'coap'];

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
