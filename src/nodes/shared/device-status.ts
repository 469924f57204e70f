/** The status both device nodes show of the device sessions their config node holds. */

import type { ConnectionSummary } from '../../devices';
import type { NodeStatus } from './status';

/** Translates a key of the node type's catalog: each device node has its own status texts. */
export type Translate = (key: string, params?: Record<string, string | number>) => string;

/**
 * Refused credentials first (they need the user), then sessions taken over or reconnecting (yellow
 * ring), then the connected ones (green dot). Nothing while no session is open.
 */
export function sessionsStatus(summary: ConnectionSummary, t: Translate): NodeStatus {
  const { open, connected, reconnecting, takenOver, unauthorized } = summary;
  if (unauthorized > 0) {
    return { fill: 'red', shape: 'ring', text: t('status.refused', { count: unauthorized }) };
  }
  if (takenOver > 0) {
    return { fill: 'yellow', shape: 'ring', text: t('status.takenOver', { count: takenOver }) };
  }
  if (reconnecting > 0) {
    return {
      fill: 'yellow',
      shape: 'ring',
      text: t('status.reconnecting', { count: reconnecting, open }),
    };
  }
  if (open === 0) return {};
  if (connected === 0) return { fill: 'yellow', shape: 'ring', text: t('status.connecting') };
  return { fill: 'green', shape: 'dot', text: t('status.connected', { count: connected }) };
}
