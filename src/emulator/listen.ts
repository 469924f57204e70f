/** Starting a TCP listener, shared by the MQTT and HTTP servers. */

import type * as net from 'node:net';

/** Listens and resolves with the port actually bound; rejects with the listen error. */
export function listenOn(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
