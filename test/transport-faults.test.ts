/** Server faults, deadlines, cancellation and unreachable servers, through every transport. */

import * as assert from 'node:assert/strict';
import { getTransport } from '../src/transports';
import type { TransportName } from '../src/transports';
import { TRANSPORTS } from './support/common';
import {
  HOST,
  allowRequest,
  closedTcpPort,
  closedUdpPort,
  deadlineIn,
  expectProvisionError,
  emulatorForSuite,
  targetOf,
  uniqueName,
  watchForLeaks,
} from './support/transport-helpers';
import type { RemoteEmulator } from './support/transport-helpers';

const WAITING_FOR: Record<TransportName, RegExp> = {
  mqtt: /for an answer on \/provision\/response from 127\.0\.0\.1:\d+ \(MQTT\)/,
  http: /for the answer to POST \/api\/v1\/provision from 127\.0\.0\.1:\d+ \(HTTP\)/,
  coap: /for the answer to POST \/api\/v1\/provision from 127\.0\.0\.1:\d+ \(CoAP\)/,
};

describe('transports: faults, deadlines and cancellation', function () {
  let emulator: RemoteEmulator;
  emulatorForSuite((e) => (emulator = e), {}, { clearFaults: true });
  watchForLeaks();

  for (const transport of TRANSPORTS) {
    describe(transport, function () {
      const provision = (deadline: number, signal?: AbortSignal) =>
        getTransport(transport)(
          targetOf(emulator, transport),
          allowRequest(uniqueName(transport)),
          {
            deadline,
            signal,
          },
        );

      it('a server that never answers: TIMEOUT at the deadline, saying what it waited for', async function () {
        await emulator.setFaults({ neverAnswerFirst: 1 });
        const startedAt = Date.now();
        const deadline = startedAt + 600;
        const err = await expectProvisionError(provision(deadline), {
          status: 'TIMEOUT',
          transient: true,
          maybeDelivered: true,
          message: WAITING_FOR[transport],
        });
        const settledAt = Date.now();
        assert.ok(settledAt >= deadline, `settled ${deadline - settledAt} ms before the deadline`);
        assert.ok(
          settledAt <= deadline + 300,
          `settled ${settledAt - deadline} ms after the deadline`,
        );
        assert.match(err.message, /^Waited (5\d\d|6\d\d|7\d\d) ms /);
      });

      it('a server that closes without answering: transient, may have been delivered', async function () {
        await emulator.setFaults({ closeWithoutAnswerFirst: 1 });
        if (transport === 'coap') {
          // Over UDP the emulator drops the request silently: only the deadline can tell.
          await expectProvisionError(provision(deadlineIn(500)), {
            status: 'TIMEOUT',
            transient: true,
            maybeDelivered: true,
          });
          return;
        }
        await expectProvisionError(provision(deadlineIn(5000)), {
          status: 'CONNECTION_ERROR',
          transient: true,
          maybeDelivered: true,
          message: /may have reached the server/,
        });
      });

      it('an internal server error is transient', async function () {
        await emulator.setFaults({ internalErrorFirst: 1 });
        const err = await expectProvisionError(provision(deadlineIn(5000)), {
          status: transport === 'mqtt' ? 'CONNECTION_ERROR' : 'PROTOCOL_ERROR',
          transient: true,
          maybeDelivered: true,
        });
        if (transport === 'http') assert.match(err.message, /HTTP 500/);
        if (transport === 'coap') assert.match(err.message, /CoAP 5\.00/);
      });

      it('a slow answer (800 ms) still arrives', async function () {
        // Over CoAP this is a separate response after an empty ACK (piggy-backing stops at 500 ms).
        await emulator.setFaults({ answerDelayMs: 800 });
        const startedAt = Date.now();
        const answer = await provision(deadlineIn(5000));
        assert.equal(answer.status, 'SUCCESS');
        assert.ok(Date.now() - startedAt >= 750, 'the answer was really delayed');
      });

      it('a lost answer after the device was created: the error says it may have been delivered', async function () {
        await emulator.setFaults({ loseAnswerFirst: 1 });
        const err = await expectProvisionError(
          provision(deadlineIn(transport === 'coap' ? 500 : 5000)),
          {
            status: transport === 'coap' ? 'TIMEOUT' : 'CONNECTION_ERROR',
            transient: true,
          },
        );
        assert.equal(err.maybeDelivered, true);
      });

      it('abort mid-flight rejects promptly with "Provisioning was cancelled"', async function () {
        await emulator.setFaults({ neverAnswerFirst: 1 });
        const controller = new AbortController();
        const pending = provision(deadlineIn(10_000), controller.signal);
        await new Promise((resolve) => setTimeout(resolve, 150));
        const abortedAt = Date.now();
        controller.abort();
        const err = await expectProvisionError(pending, {
          status: 'CONNECTION_ERROR',
          transient: false,
          message: /^Provisioning was cancelled$/,
        });
        assert.ok(Date.now() - abortedAt < 100, `took ${Date.now() - abortedAt} ms after abort`);
        assert.equal(err.name, 'ProvisionError');
      });

      it('an already aborted signal rejects without contacting the server', async function () {
        const before = (await emulator.requests()).length;
        const controller = new AbortController();
        controller.abort();
        await expectProvisionError(provision(deadlineIn(5000), controller.signal), {
          status: 'CONNECTION_ERROR',
          message: /cancelled/,
        });
        assert.equal((await emulator.requests()).length, before);
      });

      it('a deadline already passed: TIMEOUT at once', async function () {
        const startedAt = Date.now();
        await expectProvisionError(provision(Date.now() - 1), {
          status: 'TIMEOUT',
          transient: true,
          maybeDelivered: false,
        });
        assert.ok(Date.now() - startedAt < 50);
      });

      it('nothing listening on the port: CONNECTION_ERROR, transient, names host:port', async function () {
        const port = transport === 'coap' ? await closedUdpPort() : await closedTcpPort();
        const startedAt = Date.now();
        const err = await expectProvisionError(
          getTransport(transport)({ host: HOST, port }, allowRequest('refused'), {
            deadline: deadlineIn(5000),
          }),
          {
            status: 'CONNECTION_ERROR',
            transient: true,
            maybeDelivered: false,
            message: /check the host, the port and that the server is running/i,
          },
        );
        assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
        assert.match(err.message, /refused/);
        // Over CoAP too: the connected UDP socket hears the ICMP "port unreachable".
        assert.ok(Date.now() - startedAt < 1000, 'refused promptly, not at the deadline');
      });

      it('a host name that does not resolve: CONNECTION_ERROR, transient, says so', async function () {
        await expectProvisionError(
          getTransport(transport)({ host: 'nonexistent.invalid', port: 1 }, allowRequest('dns'), {
            deadline: deadlineIn(5000),
          }),
          {
            status: 'CONNECTION_ERROR',
            transient: true,
            maybeDelivered: false,
            message: /"nonexistent\.invalid" does not resolve/,
          },
        );
      });
    });
  }

  it('MQTT: a server that never sends SUBACK still answers', async function () {
    await emulator.setFaults({ noSuback: true });
    const answer = await getTransport('mqtt')(
      targetOf(emulator, 'mqtt'),
      allowRequest(uniqueName('no-suback')),
      { deadline: deadlineIn(3000) },
    );
    assert.equal(answer.status, 'SUCCESS');
  });

  it('CoAP with TLS asked for: INVALID_INPUT, DTLS is not offered', async function () {
    await expectProvisionError(
      getTransport('coap')(
        { host: HOST, port: emulator.ports.coap, tls: {} },
        allowRequest(uniqueName('dtls')),
        { deadline: deadlineIn(3000) },
      ),
      {
        status: 'INVALID_INPUT',
        transient: false,
        message:
          /^CoAP over DTLS is not offered; use MQTT or HTTP with TLS, or turn TLS off for CoAP$/,
      },
    );
  });
});
