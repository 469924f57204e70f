/**
 * What the three transports share: one exchange bounded by a deadline and an abort signal, torn
 * down completely before it settles, and the translation of socket errors into ProvisionErrors.
 */

import type { Socket } from 'node:net';
import { ProvisionError } from '../protocol/errors';
import type { TransportOptions } from './types';

export type TransportLabel = 'MQTT' | 'HTTP' | 'CoAP';

/** Where an exchange goes, for messages: never carries a credential. */
export interface Endpoint {
  transport: TransportLabel;
  host: string;
  port: number;
}

export function describeEndpoint(endpoint: Endpoint): string {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return `${host}:${endpoint.port} (${endpoint.transport})`;
}

/** The error every transport rejects with when its signal aborts. */
export function cancelledError(): ProvisionError {
  return new ProvisionError('CONNECTION_ERROR', 'Provisioning was cancelled', { transient: false });
}

export function formatWait(ms: number): string {
  return ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function timeoutError(
  endpoint: Endpoint,
  waitedMs: number,
  waitingFor: string,
  maybeDelivered: boolean,
): ProvisionError {
  return new ProvisionError(
    'TIMEOUT',
    `Waited ${formatWait(waitedMs)} for ${waitingFor} from ${describeEndpoint(endpoint)}; ` +
      'nothing came before the deadline.' +
      (maybeDelivered ? ' The request may have reached the server.' : ''),
    { transient: true, maybeDelivered },
  );
}

export function answerTooLargeError(endpoint: Endpoint, limit: number): ProvisionError {
  return new ProvisionError(
    'PROTOCOL_ERROR',
    `The server at ${describeEndpoint(endpoint)} sent more than ${limit} bytes; a provisioning ` +
      'answer is a few hundred. Check that host and port point at a ThingsBoard server.',
    { maybeDelivered: true },
  );
}

/** The connection ended (cleanly or reset) before the server answered. */
export function closedBeforeAnswerError(
  endpoint: Endpoint,
  maybeDelivered: boolean,
  cause?: unknown,
): ProvisionError {
  return new ProvisionError(
    'CONNECTION_ERROR',
    `The connection to ${describeEndpoint(endpoint)} closed before an answer came` +
      (maybeDelivered
        ? '; the request may have reached the server.'
        : '. Check the host, the port and that the server is running.'),
    { transient: true, maybeDelivered, cause },
  );
}

const CERTIFICATE_PROBLEMS: Record<string, string> = {
  SELF_SIGNED_CERT_IN_CHAIN: 'a self-signed certificate in its chain',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'a self-signed certificate',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'a certificate signed by an unknown authority',
  UNABLE_TO_GET_ISSUER_CERT: 'a certificate whose issuer is unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'a certificate whose issuer is unknown',
  CERT_UNTRUSTED: 'an untrusted certificate',
  CERT_REJECTED: 'a rejected certificate',
  CERT_SIGNATURE_FAILURE: 'a certificate with a bad signature',
  CERT_HAS_EXPIRED: 'an expired certificate',
  CERT_NOT_YET_VALID: 'a certificate that is not valid yet',
  CERT_REVOKED: 'a revoked certificate',
  INVALID_CA: 'an invalid CA certificate',
  INVALID_PURPOSE: 'a certificate not meant for a TLS server',
  ERR_TLS_CERT_ALTNAME_INVALID: 'a certificate issued for another host name',
  HOSTNAME_MISMATCH: 'a certificate issued for another host name',
};

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function isCertificateCode(code: string): boolean {
  return (
    code in CERTIFICATE_PROBLEMS || code.startsWith('CERT_') || code.startsWith('ERR_TLS_CERT')
  );
}

/**
 * Turns a socket, DNS or TLS error into a ProvisionError. Network trouble is transient; a
 * certificate or TLS configuration problem is not (retrying cannot fix it).
 */
export function connectionFailure(
  err: unknown,
  endpoint: Endpoint,
  maybeDelivered: boolean,
  context: { duringTlsHandshake?: boolean } = {},
): ProvisionError {
  if (err instanceof ProvisionError) return err;
  const code = errorCode(err) ?? 'unknown error';
  const where = describeEndpoint(endpoint);
  const check = 'Check the host, the port and that the server is running.';
  const options = { transient: true, maybeDelivered, cause: err };
  if (context.duringTlsHandshake && !isCertificateCode(code))
    return tlsHandshakeClosed(endpoint, code, err);
  switch (code) {
    case 'ECONNREFUSED':
      return new ProvisionError(
        'CONNECTION_ERROR',
        `Could not connect to ${where}: connection refused (ECONNREFUSED). ${check}`,
        { ...options, maybeDelivered: false },
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
    case 'EAI_NODATA':
      return new ProvisionError(
        'CONNECTION_ERROR',
        `Could not connect to ${where}: the host name "${endpoint.host}" does not resolve ` +
          `(${code}). Check the host name and the DNS settings of this machine.`,
        { ...options, maybeDelivered: false },
      );
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
      return new ProvisionError(
        'CONNECTION_ERROR',
        `The connection to ${where} was reset (${code}) before an answer came` +
          (maybeDelivered ? '; the request may have reached the server. ' : '. ') +
          check,
        options,
      );
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
      return new ProvisionError(
        'CONNECTION_ERROR',
        `Could not reach ${where} (${code}). ${check}`,
        options,
      );
  }
  if (isCertificateCode(code)) {
    const problem = CERTIFICATE_PROBLEMS[code] ?? 'a certificate that could not be verified';
    const hint =
      code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH'
        ? ' Use the host name the certificate was issued for, or set the server name in the TLS ' +
          "configuration; for a private CA, add the server's CA in the TLS configuration."
        : code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID'
          ? " Renew the server's certificate or check this machine's clock; add the server's CA " +
            'in the TLS configuration if it is a private one.'
          : " Add the server's CA certificate in the TLS configuration.";
    return new ProvisionError(
      'CONNECTION_ERROR',
      `The TLS certificate of ${where} was not accepted: the server presented ${problem} ` +
        `(${code}).${hint}`,
      { transient: false, maybeDelivered: false, cause: err },
    );
  }
  if (
    code === 'EPROTO' ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_OSSL_')
  ) {
    return new ProvisionError(
      'CONNECTION_ERROR',
      `The TLS connection to ${where} failed (${code}). Check that the port speaks TLS and the ` +
        'TLS configuration (CA, client certificate, key and passphrase).',
      { transient: false, maybeDelivered, cause: err },
    );
  }
  return new ProvisionError(
    'CONNECTION_ERROR',
    `The connection to ${where} failed (${code}). ${check}`,
    options,
  );
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The server hung up in the middle of the TLS handshake: most often a port that does not speak TLS. */
export function tlsHandshakeClosed(
  endpoint: Endpoint,
  code: string,
  cause?: unknown,
): ProvisionError {
  return new ProvisionError(
    'CONNECTION_ERROR',
    `${describeEndpoint(endpoint)} closed the connection during the TLS handshake (${code}). ` +
      'Check that the port speaks TLS (ThingsBoard: MQTTS 8883, HTTPS 443) and the TLS ' +
      'configuration (a client certificate the server requires).',
    { transient: false, maybeDelivered: false, cause },
  );
}

/** Tells whether a TLS socket is connected but not yet through its handshake. */
export function tlsHandshakeWatch(socket: Socket): () => boolean {
  // Watched while still connecting, or else a pooled socket that went through its handshake.
  let connected = !socket.connecting;
  let secured = connected;
  socket.once('connect', () => {
    connected = true;
  });
  socket.once('secureConnect', () => {
    secured = true;
  });
  return () => connected && !secured;
}

/** The handle a transport body uses to steer its exchange. */
export interface ExchangeControl<T> {
  /** Settle with a result once the teardown is done; later calls are ignored. */
  succeed(value: T): void;
  /** Settle with an error once the teardown is done; later calls are ignored. */
  fail(err: unknown): void;
  /** Names what the exchange waits for now, for the timeout message. */
  waitingFor(description: string): void;
  /** Marks that the request may have reached the server from now on. */
  markDelivered(): void;
  readonly delivered: boolean;
  readonly settled: boolean;
  /** Registers a release step; each runs once when the exchange settles, in reverse order. */
  onTeardown(release: () => void | Promise<void>): void;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Runs one exchange: arms the deadline and the abort signal, lets `body` open sockets and
 * register their release, and settles only after every release step has finished.
 */
export function runExchange<T>(
  endpoint: Endpoint,
  options: TransportOptions,
  initialWait: string,
  body: (control: ExchangeControl<T>) => void | Promise<void>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const startedAt = Date.now();
    const releases: Array<() => void | Promise<void>> = [];
    let waiting = initialWait;
    let timer: NodeJS.Timeout | undefined;
    const { signal } = options;

    const settle = (outcome: { value: T } | { error: unknown }): void => {
      if (control.settled) return;
      control.settled = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const finish = (): void => {
        if ('value' in outcome) resolve(outcome.value);
        else reject(connectionFailure(outcome.error, endpoint, control.delivered));
      };
      // Release steps that finish at once (a pooled HTTP socket) cost no extra promise round.
      const pending: Array<Promise<void>> = [];
      for (const release of releases.splice(0).reverse()) {
        try {
          const done = release();
          if (done) pending.push(done);
        } catch {
          // A failed release must not keep the outcome from the caller.
        }
      }
      if (pending.length === 0) finish();
      else void Promise.allSettled(pending).then(finish);
    };
    const onAbort = (): void => settle({ error: cancelledError() });

    // Plain data properties, no getters: V8 keeps getter pairs in old space, which would hold every
    // exchange's closures until the next full collection.
    const control: Mutable<ExchangeControl<T>> = {
      succeed: (value) => settle({ value }),
      fail: (error) => settle({ error }),
      waitingFor: (description) => {
        waiting = description;
      },
      markDelivered: () => {
        control.delivered = true;
      },
      delivered: false,
      settled: false,
      onTeardown: (release) => {
        if (control.settled) void Promise.resolve().then(release);
        else releases.push(release);
      },
    };

    if (signal?.aborted) {
      settle({ error: cancelledError() });
      return;
    }
    const remaining = options.deadline - startedAt;
    if (!(remaining > 0)) {
      settle({ error: timeoutError(endpoint, 0, waiting, false) });
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    const arm = (): void => {
      const left = options.deadline - Date.now();
      // setTimeout fires at once for delays beyond 2^31-1 ms: re-arm until the deadline is near.
      timer = setTimeout(
        () => {
          if (Date.now() < options.deadline) arm();
          else
            settle({
              error: timeoutError(endpoint, Date.now() - startedAt, waiting, control.delivered),
            });
        },
        Math.min(Math.max(left, 1), MAX_TIMER_MS),
      );
    };
    arm();
    try {
      const started = body(control);
      if (started instanceof Promise) started.catch((err: unknown) => settle({ error: err }));
    } catch (err) {
      settle({ error: err });
    }
  });
}

/** Milliseconds left before the deadline, at least 1. */
export function remainingMs(options: TransportOptions): number {
  return Math.max(1, options.deadline - Date.now());
}
