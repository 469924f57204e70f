/**
 * `tb-provision-emulator rpc|attributes|sessions|device`: asks a running emulator through its
 * control route (loopback only), so a person can talk to a device without writing code.
 */

import * as http from 'node:http';
import { parseArgs } from 'node:util';

export const CONTROL_COMMANDS = ['rpc', 'attributes', 'sessions', 'device'] as const;

export const CONTROL_USAGE = `Commands for a running emulator (through its HTTP port, from this machine only):
  tb-provision-emulator rpc <device> <method> [params-json] [--timeout <ms>]
        send a server-side RPC and print the device's reply (default params {}, timeout 10000)
  tb-provision-emulator attributes <device> <json-object>
        set shared attributes and push them to the device's session
  tb-provision-emulator sessions
        list the open device sessions
  tb-provision-emulator device <device>
        print what a device sent (telemetry, attributes, RPC replies), without its credentials
  Options: --host <address> (default 127.0.0.1), --http-port <port> (default 8080)
`;

class UsageError extends Error {}

interface ControlRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
}

export async function runControlCommand(argv: string[]): Promise<number> {
  let request: ControlRequest;
  let target: { host: string; port: number };
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        'http-port': { type: 'string' },
        timeout: { type: 'string' },
      },
      strict: true,
      allowPositionals: true,
    });
    const port = Number(values['http-port'] ?? '8080');
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new UsageError('--http-port must be a port number from 1 to 65535');
    }
    target = { host: values.host ?? '127.0.0.1', port };
    request = controlRequest(positionals, values.timeout);
  } catch (error) {
    process.stderr.write(`tb-provision-emulator: ${(error as Error).message}\n\n${CONTROL_USAGE}`);
    return 2;
  }
  try {
    const answer = await send(target, request);
    if (answer.status >= 200 && answer.status < 300) {
      process.stdout.write(`${JSON.stringify(JSON.parse(answer.body), null, 2)}\n`);
      return 0;
    }
    const failure = readFailure(answer.body);
    process.stderr.write(`tb-provision-emulator: ${answer.status} ${failure}\n`);
    return 1;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `http://${target.host}:${target.port}`;
    process.stderr.write(
      code === 'ECONNREFUSED'
        ? `tb-provision-emulator: no emulator answers on ${where} (start one, or give --http-port)\n`
        : `tb-provision-emulator: ${where}: ${(error as Error).message}\n`,
    );
    return 1;
  }
}

function controlRequest(positionals: string[], timeout: string | undefined): ControlRequest {
  const [command, ...rest] = positionals;
  const device = (index: number) => {
    const name = rest[index];
    if (name === undefined || name === '') throw new UsageError(`${command} needs a device name`);
    return encodeURIComponent(name);
  };
  const arity = (most: number) => {
    if (rest.length > most) throw new UsageError(`too many arguments for ${command}`);
  };
  switch (command) {
    case 'rpc': {
      arity(3);
      const method = rest[1];
      if (method === undefined || method === '') throw new UsageError('rpc needs a method name');
      const body: Record<string, unknown> = { method, params: json(rest[2] ?? '{}', 'params') };
      if (timeout !== undefined) {
        const timeoutMs = Number(timeout);
        if (!(timeoutMs > 0)) throw new UsageError('--timeout must be a positive number of ms');
        body.timeoutMs = timeoutMs;
      }
      return { method: 'POST', path: `/emulator/rpc/${device(0)}`, body };
    }
    case 'attributes': {
      arity(2);
      const values = json(rest[1] ?? '', 'the attributes');
      if (typeof values !== 'object' || values === null || Array.isArray(values)) {
        throw new UsageError('the attributes must be a JSON object, e.g. \'{"interval":5}\'');
      }
      return { method: 'POST', path: `/emulator/attributes/${device(0)}`, body: values };
    }
    case 'sessions':
      arity(0);
      return { method: 'GET', path: '/emulator/sessions' };
    case 'device':
      arity(1);
      return { method: 'GET', path: `/emulator/devices/${device(0)}` };
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

function json(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError(`${what} must be JSON, e.g. '{"on":true}'`);
  }
}

function readFailure(body: string): string {
  try {
    const failure = JSON.parse(body) as { error?: string; message?: string };
    return `${failure.error ?? 'ERROR'}: ${failure.message ?? ''}`;
  } catch {
    return body;
  }
}

function send(
  target: { host: string; port: number },
  request: ControlRequest,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    const req = http.request(
      {
        host: target.host,
        port: target.port,
        method: request.method,
        path: request.path,
        headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
