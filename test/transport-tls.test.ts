/** MQTT over TLS and HTTPS: certificate checks, their error messages, and the client certificate. */

import * as assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type * as net from 'node:net';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { closeHttpAgents, forgetTlsSessions, getTransport } from '../src/transports';
import type { TlsOptions, TransportTarget } from '../src/transports';
import {
  HOST,
  allowRequest,
  deadlineIn,
  expectProvisionError,
  serverSide,
  answerOnly,
  serveMqtt,
  emulatorForSuite,
  uniqueName,
  watchForLeaks,
} from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';
import {
  TEST_CA_CERT,
  TEST_DEVICE_CERTS,
  TEST_DEVICE_KEY_ENCRYPTED,
  TEST_DEVICE_KEY_PASSPHRASE,
  TEST_EXPIRED_SERVER_CERT,
  TEST_SERVER_CERT,
  TEST_SERVER_KEY,
} from './support/transport-certificates';

type TlsTransport = 'mqtt' | 'http';
const TLS_TRANSPORTS: readonly TlsTransport[] = ['mqtt', 'http'];

/** A TLS server that completes handshakes, then hands each socket to `onSecure` (or says nothing). */
async function rawTlsServer(
  options: tls.TlsOptions,
  onSecure: (socket: tls.TLSSocket) => void = () => undefined,
): Promise<{ port: number; peers: Buffer[]; close(): Promise<void> }> {
  const peers: Buffer[] = [];
  const server = tls.createServer(options, (socket) => {
    const peer = socket.getPeerCertificate();
    if (peer.raw !== undefined) peers.push(peer.raw);
    onSecure(socket);
  });
  server.on('tlsClientError', () => undefined);
  const retire = serverSide(server);
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    peers,
    close: async () => retire(),
  };
}

describe('transports over TLS', function () {
  let emulator: RemoteEmulator;

  emulatorForSuite((e) => (emulator = e), {
    tls: { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT },
    mqttsPort: 0,
    httpsPort: 0,
  });
  watchForLeaks();

  for (const transport of TLS_TRANSPORTS) {
    describe(transport === 'mqtt' ? 'mqtts' : 'https', function () {
      const tlsPort = () =>
        (transport === 'mqtt' ? emulator.ports.mqtts : emulator.ports.https) ?? 0;
      const provision = (tlsOptions: TlsOptions, host = HOST, port = tlsPort()) =>
        getTransport(transport)(
          { host, port, tls: tlsOptions },
          allowRequest(uniqueName(`tls-${transport}`)),
          { deadline: deadlineIn(3000) },
        );

      it('provisions when the server certificate is signed by the configured CA', async function () {
        const answer = await provision({ ca: TEST_CA_CERT });
        assert.equal(answer.status, 'SUCCESS');
      });

      it('verifies the host name too: localhost matches the certificate', async function () {
        const answer = await provision({ ca: TEST_CA_CERT }, 'localhost');
        assert.equal(answer.status, 'SUCCESS');
      });

      it('an unknown CA is refused, not transient, and says to add the CA', async function () {
        await expectProvisionError(provision({}), {
          status: 'CONNECTION_ERROR',
          transient: false,
          maybeDelivered: false,
          message:
            /UNABLE_TO_VERIFY_LEAF_SIGNATURE.*Add the server's CA certificate in the TLS configuration/,
        });
      });

      it('a host name the certificate does not name is refused (ERR_TLS_CERT_ALTNAME_INVALID)', async function () {
        await expectProvisionError(provision({ ca: TEST_CA_CERT, servername: 'other.example' }), {
          status: 'CONNECTION_ERROR',
          transient: false,
          message: /another host name \(ERR_TLS_CERT_ALTNAME_INVALID\)/,
        });
      });

      it('with verification turned off, an unknown CA is accepted', async function () {
        const answer = await provision({ rejectUnauthorized: false });
        assert.equal(answer.status, 'SUCCESS');
      });

      it('a TLS client on a plain port fails, not transient, pointing at the port', async function () {
        // MQTT: the server hangs up on the ClientHello; HTTP: it answers in clear (EPROTO).
        const plainPort = transport === 'mqtt' ? emulator.ports.mqtt : emulator.ports.http;
        await expectProvisionError(provision({ ca: TEST_CA_CERT }, HOST, plainPort), {
          status: 'CONNECTION_ERROR',
          transient: false,
          message: /Check that the port speaks TLS/,
        });
      });

      it('an expired server certificate is refused (CERT_HAS_EXPIRED)', async function () {
        const server = await rawTlsServer({ key: TEST_SERVER_KEY, cert: TEST_EXPIRED_SERVER_CERT });
        try {
          await expectProvisionError(provision({ ca: TEST_CA_CERT }, HOST, server.port), {
            status: 'CONNECTION_ERROR',
            transient: false,
            message: /expired certificate \(CERT_HAS_EXPIRED\)/,
          });
        } finally {
          await server.close();
        }
      });

      it('a self-signed server certificate is refused (DEPTH_ZERO_SELF_SIGNED_CERT)', async function () {
        const server = await rawTlsServer({
          key: TEST_DEVICE_KEY_ENCRYPTED,
          passphrase: TEST_DEVICE_KEY_PASSPHRASE,
          cert: TEST_DEVICE_CERTS[0],
        });
        try {
          await expectProvisionError(provision({}, HOST, server.port), {
            status: 'CONNECTION_ERROR',
            transient: false,
            message: /self-signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\).*CA/,
          });
        } finally {
          await server.close();
        }
      });

      it('a chain ending in an unknown self-signed CA is refused (SELF_SIGNED_CERT_IN_CHAIN)', async function () {
        const server = await rawTlsServer({
          key: TEST_SERVER_KEY,
          cert: TEST_SERVER_CERT + TEST_CA_CERT,
        });
        try {
          await expectProvisionError(provision({}, HOST, server.port), {
            status: 'CONNECTION_ERROR',
            transient: false,
            message: /SELF_SIGNED_CERT_IN_CHAIN/,
          });
        } finally {
          await server.close();
        }
      });

      it('presents the client certificate, its key unlocked with the passphrase', async function () {
        const server = await rawTlsServer({
          key: TEST_SERVER_KEY,
          cert: TEST_SERVER_CERT,
          requestCert: true,
          rejectUnauthorized: false,
        });
        try {
          // The silent server lets the exchange end at the deadline; the handshake is what counts.
          await getTransport(transport)(
            {
              host: HOST,
              port: server.port,
              tls: {
                ca: TEST_CA_CERT,
                cert: TEST_DEVICE_CERTS[0],
                key: TEST_DEVICE_KEY_ENCRYPTED,
                passphrase: TEST_DEVICE_KEY_PASSPHRASE,
              },
            },
            allowRequest('client-cert'),
            { deadline: deadlineIn(300) },
          ).catch(() => undefined);
          assert.equal(server.peers.length, 1);
          assert.deepEqual(server.peers[0], new X509Certificate(TEST_DEVICE_CERTS[0]).raw);
        } finally {
          await server.close();
        }
      });

      it('a wrong passphrase is a TLS configuration error, not transient', async function () {
        await expectProvisionError(
          provision({
            ca: TEST_CA_CERT,
            cert: TEST_DEVICE_CERTS[0],
            key: TEST_DEVICE_KEY_ENCRYPTED,
            passphrase: 'wrong',
          }),
          { status: 'CONNECTION_ERROR', transient: false, message: /passphrase/ },
        );
      });
    });
  }

  describe('mqtts: connections after the first', function () {
    const ANSWER =
      '{"credentialsValue":"tls-token","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}';

    /** Answers every request over MQTT and notes, per connection, whether a session resumed. */
    async function resumingServer(maxVersion: tls.SecureVersion) {
      const resumed: boolean[] = [];
      const server = await rawTlsServer(
        { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT, maxVersion },
        (socket) => {
          resumed.push(socket.isSessionReused());
          serveMqtt(socket, answerOnly(ANSWER));
          socket.on('error', () => undefined);
        },
      );
      return { ...server, resumed };
    }

    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      it(`resume the TLS session the same server gave, per TLS configuration (${version})`, async function () {
        const server = await resumingServer(version);
        const provision = (tlsOptions: TlsOptions) =>
          getTransport('mqtt')(
            { host: HOST, port: server.port, tls: tlsOptions },
            allowRequest(uniqueName('resume')),
            { deadline: deadlineIn(3000) },
          );
        try {
          // A fresh options object each time, as each message builds its own.
          for (let i = 0; i < 3; i++) {
            assert.equal((await provision({ ca: TEST_CA_CERT })).status, 'SUCCESS');
          }
          // Another configuration (here: verification off) never gets the first one's session.
          await provision({ ca: TEST_CA_CERT, rejectUnauthorized: false });
          await provision({ ca: TEST_CA_CERT, rejectUnauthorized: false });
          // What the node calls when its last instance closes.
          forgetTlsSessions();
          await provision({ ca: TEST_CA_CERT });
          assert.deepEqual(server.resumed, [false, true, true, false, true, false]);
        } finally {
          await server.close();
        }
      });
    }

    it('a server refused for its host name is refused again, with a full handshake', async function () {
      // TLS 1.2 hands the session over at the end of the handshake, before the host name check.
      const server = await resumingServer('TLSv1.2');
      try {
        for (let i = 0; i < 2; i++) {
          await expectProvisionError(
            getTransport('mqtt')(
              {
                host: HOST,
                port: server.port,
                tls: { ca: TEST_CA_CERT, servername: 'elsewhere.example' },
              },
              allowRequest(uniqueName('refused')),
              { deadline: deadlineIn(3000) },
            ),
            { status: 'CONNECTION_ERROR', transient: false, message: /another host name/ },
          );
        }
        assert.deepEqual(server.resumed, [false, false]);
      } finally {
        await server.close();
      }
    });
  });

  describe('https: connections after the first', function () {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      it(`a new connection resumes the TLS session the server gave (${maxVersion})`, async function () {
        const resumed: boolean[] = [];
        const server = https.createServer(
          { key: TEST_SERVER_KEY, cert: TEST_SERVER_CERT, maxVersion },
          (_req, res) => {
            res.end(
              '{"credentialsValue":"tls-token","credentialsType":"ACCESS_TOKEN","status":"SUCCESS"}',
            );
          },
        );
        server.on('secureConnection', (socket: tls.TLSSocket) => {
          resumed.push(socket.isSessionReused());
        });
        const retire = serverSide(server);
        await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
        const port = (server.address() as net.AddressInfo).port;
        const provision = () =>
          getTransport('http')(
            { host: HOST, port, tls: { ca: TEST_CA_CERT } },
            allowRequest(uniqueName('resume')),
            { deadline: deadlineIn(3000) },
          );
        try {
          await provision();
          // Closing the pool closes its connection: the next request opens a new one.
          closeHttpAgents();
          await provision();
          closeHttpAgents();
          forgetTlsSessions();
          await provision();
          assert.deepEqual(resumed, [false, true, false]);
        } finally {
          await retire();
        }
      });
    }
  });

  it('HTTPS pools are kept apart per TLS configuration', async function () {
    const target = (tlsOptions: TlsOptions): TransportTarget => ({
      host: HOST,
      port: emulator.ports.https ?? 0,
      tls: tlsOptions,
    });
    const http = getTransport('http');
    const trusted = await http(target({ ca: TEST_CA_CERT }), allowRequest(uniqueName('pool')), {
      deadline: deadlineIn(3000),
    });
    assert.equal(trusted.status, 'SUCCESS');
    // A pooled connection verified with the CA must not serve a configuration without it.
    await expectProvisionError(
      http(target({}), allowRequest(uniqueName('pool')), { deadline: deadlineIn(3000) }),
      {
        status: 'CONNECTION_ERROR',
        transient: false,
      },
    );
  });
});
