/** Loading the transports stays cheap: each protocol library loads only when its transport is first used. */

import * as assert from 'node:assert/strict';
import { LOADED_LIBRARIES, runFresh } from './support/fresh-process';

describe('transports: lazy loading', function () {
  this.timeout(30_000);

  it('requiring src/transports loads no MQTT, HTTP or CoAP library', async function () {
    const loaded = await runFresh(
      `
      ${LOADED_LIBRARIES}
      const transports = require('./src/transports');
      for (const name of ['mqtt', 'http', 'coap']) transports.getTransport(name);
      console.log(JSON.stringify(loaded()));
    `,
      { tsx: true },
    );
    assert.deepEqual(loaded, []);
  });

  it('each package loads on the first use of its own transport only', async function () {
    const steps = await runFresh(
      `
      ${LOADED_LIBRARIES}
      const net = require('node:net');
      const transports = require('./src/transports');
      const request = { provisionDeviceKey: 'k', provisionDeviceSecret: 's', deviceName: 'd' };
      const server = net.createServer();
      server.listen(0, '127.0.0.1', async () => {
        const target = { host: '127.0.0.1', port: server.address().port };
        server.close();
        const steps = [];
        for (const name of ['http', 'mqtt', 'coap']) {
          await transports.getTransport(name)(target, request, { deadline: Date.now() + 2000 })
            .catch(() => undefined);
          steps.push(loaded());
        }
        transports.closeHttpAgents();
        console.log(JSON.stringify(steps));
      });
    `,
      { tsx: true },
    );
    // The MQTT transport speaks the protocol with mqtt-packet alone: the mqtt client never loads.
    assert.deepEqual(steps, [
      ['undici'],
      ['mqtt-packet', 'undici'],
      ['coap-packet', 'mqtt-packet', 'undici'],
    ]);
  });
});
