/** The status both device nodes show of the device sessions their config node holds. */

import type { ConnectionSummary, SessionState } from '../../devices';
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

/**
 * A gateway's one connection: its name and the devices it announced (green dot), reconnecting or
 * taken over (yellow ring), refused, which includes a device that is not a gateway (red ring).
 */
export function gatewayStatus(
  gateway: string,
  current: { state: SessionState; devices: number } | undefined,
  t: Translate,
): NodeStatus {
  switch (current?.state) {
    case undefined:
    case 'closed':
      return {};
    case 'connected':
      return {
        fill: 'green',
        shape: 'dot',
        text: t('status.gateway', { gateway, count: current.devices }),
      };
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: t('status.connecting') };
    case 'unauthorized':
      return { fill: 'red', shape: 'ring', text: t('status.gatewayRefused', { gateway }) };
    default:
      return { fill: 'yellow', shape: 'ring', text: t('status.gatewayReconnecting', { gateway }) };
  }
}
