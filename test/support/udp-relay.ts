/**
 * A UDP relay to a port on 127.0.0.1, for CoAP what the TCP proxy is for MQTT and HTTP: a test can
 * drop every datagram for a while (a link gone) or hold the server's answers back.
 */

import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

const HOST = '127.0.0.1';

export interface UdpRelay {
  port: number;
  /** Drops datagrams both ways until restore(). */
  drop(): void;
  restore(): void;
  /** Holds the server's datagrams back until release(). */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

function bound(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  return new Promise((resolve) => socket.bind(0, HOST, () => resolve(socket)));
}

export async function udpRelay(targetPort: number): Promise<UdpRelay> {
  const front = await bound();
  /** One socket towards the server per client address, so answers find their way back. */
  const backs = new Map<string, dgram.Socket>();
  const held: Array<() => void> = [];
  let dropping = false;
  let holding = false;

  front.on('message', (datagram, client) => {
    if (dropping) return;
    const key = `${client.address}:${client.port}`;
    let back = backs.get(key);
    if (back === undefined) {
      back = dgram.createSocket('udp4');
      back.bind(0, HOST);
      back.on('message', (answer) => {
        if (dropping) return;
        const forward = (): void => front.send(answer, client.port, client.address);
        if (holding) held.push(forward);
        else forward();
      });
      backs.set(key, back);
    }
    back.send(datagram, targetPort, HOST);
  });

  return {
    port: (front.address() as AddressInfo).port,
    drop: () => void (dropping = true),
    restore: () => void (dropping = false),
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const forward of held.splice(0)) forward();
    },
    close: async () => {
      const sockets = [front, ...backs.values()];
      await Promise.all(
        sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
      );
    },
  };
}
