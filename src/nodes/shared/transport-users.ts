/**
 * The transports' shared resources (the HTTP keep-alive pool, TLS sessions, the CoAP links) serve
 * every provision node and every config node's device connections in the process: the last user
 * to stop closes them, so a provision node stopping never cuts a device's request in flight.
 */

import { closeCoapLinks, closeHttpAgents, forgetTlsSessions } from '../../transports';

let users = 0;

/** Registers one user; call the returned function once, when it no longer sends anything. */
export function useTransports(): () => Promise<void> {
  users++;
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    if (--users > 0) return;
    closeHttpAgents();
    forgetTlsSessions();
    await closeCoapLinks();
  };
}
