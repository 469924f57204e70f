/**
 * MQTTS and HTTPS through the provision node and a core tls-config node, against the emulator
 * with a test CA: the server certificate is verified unless the flow says otherwise, the CA and a
 * client certificate reach the connection, and turning verification off is warned about once.
 */

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { PROFILE, SECRET, keys, loadFlow, provisionFlow } from './support/flows';
import type { FlowNode } from './support/flows';
import { coreNodeModule, helper } from './support/node-red';
import { flowTarget, guardEachTest, oneWayOut } from './support/reliability';
import {
  TEST_CA_CERT,
  TEST_DEVICE_CERTS,
  TEST_DEVICE_KEY_ENCRYPTED,
  TEST_DEVICE_KEY_PASSPHRASE,
  TEST_SERVER_CERT,
  TEST_SERVER_KEY,
} from './support/transport-certificates';
import { HOST, emulatorForSuite, serverSide } from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';

type TlsTransport = 'mqtt' | 'http';
const TLS_TRANSPORTS: readonly TlsTransport[] = ['mqtt', 'http'];
const tlsConfigModule = coreNodeModule('core/network/05-tls.js');

interface TlsConfigProps {
  ca?: string;
  verifyservercert?: boolean;
}

/** A core tls-config node; its certificate material comes as credentials or file paths. */
function tlsConfigNode(props: TlsConfigProps = {}): FlowNode {
  const node: FlowNode = {
    id: 'tlsConfig',
    type: 'tls-config',
    name: 'test CA',
    cert: '',
    key: '',
    ca: props.ca ?? '',
    certname: '',
    keyname: '',
    caname: '',
    servername: '',
    alpnprotocol: '',
  };
  // Left out, the core node passes rejectUnauthorized: undefined: verification must still be on.
  if (props.verifyservercert !== undefined) node.verifyservercert = props.verifyservercert;
  return node;
}

/**
 * A TLS front that demands a client certificate issued as `trusted`, records the certificates
 * presented, and passes the decrypted bytes on to a plain port of the emulator.
 */
async function mutualTlsFront(
  backendPort: number,
  trusted: string,
): Promise<{ port: number; peers: Buffer[]; refused: number; close(): Promise<void> }> {
  const state = { peers: [] as Buffer[], refused: 0 };
  const server = tls.createServer(
    {
      key: TEST_SERVER_KEY,
      cert: TEST_SERVER_CERT,
      requestCert: true,
      rejectUnauthorized: true,
      ca: trusted,
    },
    (socket) => {
      state.peers.push(socket.getPeerCertificate().raw);
      const backend = net.connect(backendPort, HOST);
      socket.pipe(backend).pipe(socket);
      socket.on('error', () => backend.destroy());
      backend.on('error', () => socket.destroy());
      socket.on('close', () => backend.destroy());
      backend.on('close', () => socket.destroy());
    },
  );
  server.on('tlsClientError', () => {
    state.refused += 1;
  });
  const retire = serverSide(server);
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get peers() {
      return state.peers;
    },
    get refused() {
      return state.refused;
    },
    close: async () => retire(),
  };
}

describe('reliability: TLS through the provision node and a tls-config node', function () {
  let emulator: RemoteEmulator;
  const guard = guardEachTest();
  let counter = 0;
  const deviceName = (label: string) => `tls-${label}-${process.pid}-${++counter}`;

  emulatorForSuite((e) => (emulator = e), {
    profiles: [PROFILE],
    tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT },
    mqttsPort: 0,
    httpsPort: 0,
  });

  const tlsPorts = () => ({
    mqttPort: emulator.ports.mqtts,
    httpPort: emulator.ports.https,
  });

  async function requestsFor(name: string): Promise<number> {
    return (await emulator.requests()).filter(
      (r) => (r.body as { deviceName?: string } | undefined)?.deviceName === name,
    ).length;
  }

  /** Loads the flow with TLS on, pointed at the emulator's TLS ports (or `ports`). */
  async function loadTlsFlow(
    transport: TlsTransport,
    tlsNode: FlowNode | undefined,
    credentials: Record<string, string> = {},
    ports: Record<string, unknown> = tlsPorts(),
    props: Record<string, unknown> = {},
  ): Promise<void> {
    const flow = provisionFlow(
      flowTarget(emulator),
      { transport, retries: 2, timeout: 3, ...props },
      { usetls: true, tls: tlsNode ? tlsNode.id : '', ...ports },
    );
    if (tlsNode) flow.push(tlsNode);
    const creds = { ...keys(), ...(tlsNode ? { [tlsNode.id]: credentials } : {}) };
    await loadFlow(flow, creds, guard.userDir, [tlsConfigModule]);
  }

  for (const transport of TLS_TRANSPORTS) {
    const label = transport === 'mqtt' ? 'MQTTS' : 'HTTPS';
    describe(label, function () {
      it('verifies the server by default: no tls-config node, unknown CA → CONNECTION_ERROR naming the problem, not retried', async function () {
        await loadTlsFlow(transport, undefined);
        const name = deviceName('no-ca');
        const { msg, via } = await oneWayOut({ deviceName: name });
        assert.equal(via, 'caught');
        const payload = msg.payload as Record<string, string>;
        assert.equal(payload.status, 'CONNECTION_ERROR');
        assert.match(payload.errorMsg, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/i);
        assert.match(payload.errorMsg, /CA/);
        // A certificate problem does not go away by itself: no retries, nothing reached the server.
        assert.equal(await requestsFor(name), 0);
      });

      it('a tls-config node without a CA and verifyservercert unset still verifies', async function () {
        await loadTlsFlow(transport, tlsConfigNode());
        const { msg } = await oneWayOut({ deviceName: deviceName('unset') });
        assert.equal((msg.payload as Record<string, string>).status, 'CONNECTION_ERROR');
        assert.match(
          (msg.payload as Record<string, string>).errorMsg,
          /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/i,
        );
      });

      it('provisions once the CA is given as tls-config credentials', async function () {
        await loadTlsFlow(transport, tlsConfigNode({ verifyservercert: true }), {
          cadata: TEST_CA_CERT,
        });
        const name = deviceName('ca-data');
        const { msg, via } = await oneWayOut({ deviceName: name });
        assert.equal(via, 'out', String(msg.error?.message));
        const device = await emulator.device(name);
        assert.ok(device);
        assert.equal(
          (msg.payload as Record<string, unknown>).credentialsValue,
          device.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
        );
        if (transport === 'mqtt') assert.equal((msg.broker as { usetls: boolean }).usetls, true);
      });

      it('provisions once the CA is given as a file path on the tls-config node', async function () {
        const caFile = path.join(guard.userDir, 'test-ca.pem');
        fs.writeFileSync(caFile, TEST_CA_CERT);
        await loadTlsFlow(transport, tlsConfigNode({ ca: caFile, verifyservercert: true }));
        const name = deviceName('ca-file');
        const { msg, via } = await oneWayOut({ deviceName: name });
        assert.equal(via, 'out', String(msg.error?.message));
        assert.ok(await emulator.device(name));
      });

      it('presents the client certificate for mutual TLS (key unlocked with the passphrase)', async function () {
        const plainPort = transport === 'mqtt' ? emulator.ports.mqtt : emulator.ports.http;
        const front = await mutualTlsFront(plainPort, TEST_DEVICE_CERTS[0]);
        try {
          await loadTlsFlow(
            transport,
            tlsConfigNode({ verifyservercert: true }),
            {
              cadata: TEST_CA_CERT,
              certdata: TEST_DEVICE_CERTS[0],
              keydata: TEST_DEVICE_KEY_ENCRYPTED,
              passphrase: TEST_DEVICE_KEY_PASSPHRASE,
            },
            { [`${transport}Port`]: front.port },
          );
          const name = deviceName('mutual');
          const { msg, via } = await oneWayOut({ deviceName: name });
          assert.equal(via, 'out', String(msg.error?.message));
          assert.ok(front.peers.length >= 1);
          const presented = new X509Certificate(TEST_DEVICE_CERTS[0]).raw;
          for (const peer of front.peers) assert.deepEqual(peer, presented);
          assert.ok(await emulator.device(name));
          // The passphrase never shows in what the flow sees.
          assert.ok(!JSON.stringify(msg).includes(TEST_DEVICE_KEY_PASSPHRASE));
        } finally {
          await front.close();
        }
      });

      it('without the client certificate a server demanding one refuses: CONNECTION_ERROR', async function () {
        const plainPort = transport === 'mqtt' ? emulator.ports.mqtt : emulator.ports.http;
        const front = await mutualTlsFront(plainPort, TEST_DEVICE_CERTS[0]);
        try {
          await loadTlsFlow(
            transport,
            tlsConfigNode({ verifyservercert: true }),
            { cadata: TEST_CA_CERT },
            { [`${transport}Port`]: front.port },
            { retries: 0 },
          );
          const name = deviceName('no-client-cert');
          const { msg, via } = await oneWayOut({ deviceName: name });
          assert.equal(via, 'caught');
          assert.equal((msg.payload as Record<string, string>).status, 'CONNECTION_ERROR');
          assert.match((msg.payload as Record<string, string>).errorMsg, /CERTIFICATE_REQUIRED/);
          assert.equal(front.peers.length, 0);
          assert.ok(front.refused >= 1, 'the front refused the handshake');
          assert.equal(await requestsFor(name), 0);
        } finally {
          await front.close();
        }
      });

      it('with verifyservercert off it provisions, and warns once however many messages', async function () {
        await loadTlsFlow(transport, tlsConfigNode({ verifyservercert: false }));
        const warnings: string[] = [];
        for (const id of ['cfg', 'prov']) {
          // The test helper reports every call of a node method as a `call:<method>` event.
          (helper.getNode(id) as unknown as EventEmitter).on(
            'call:warn',
            (call: { args: unknown[] }) => {
              warnings.push(String(call.args[0]));
            },
          );
        }
        for (let i = 0; i < 4; i++) {
          const name = deviceName('unverified');
          const { msg, via } = await oneWayOut({ deviceName: name });
          assert.equal(via, 'out', String(msg.error?.message));
          assert.ok(await emulator.device(name));
        }
        assert.equal(warnings.length, 1, warnings.join('\n'));
        assert.match(warnings[0], /verif/i);
        assert.ok(!warnings[0].includes(SECRET));
      });
    });
  }
});
