#!/usr/bin/env node
/**
 * tb-provision-emulator: runs the local ThingsBoard emulator until Ctrl+C, or, with a command,
 * asks a running one to send an RPC or an attribute update to a device.
 */

import { parseArgs } from 'node:util';
import { CONTROL_COMMANDS, CONTROL_USAGE, runControlCommand } from './cli-control';
import { Emulator, EmulatorListenError, type ListenerName } from './index';
import { mask } from './format';
import { isLoopback } from './http-control';
import type { ProvisionStrategy } from './types';

const STRATEGIES: readonly ProvisionStrategy[] = [
  'allow-create',
  'check-pre-provisioned',
  'check-pre-provisioned-legacy',
  'disabled',
];
const DEMO_KEY = 'demo-provision-key';
const DEMO_SECRET = 'demo-provision-secret';

const USAGE = `Usage: tb-provision-emulator [options]
       tb-provision-emulator <command> [arguments]

A local ThingsBoard (device provisioning, device API, gateway API over MQTT, HTTP and CoAP) for
developing flows offline.

Options:
  --host <address>      interface to listen on (default 127.0.0.1)
  --mqtt-port <port>    MQTT port (default 1883; 0 picks a free port)
  --http-port <port>    HTTP port (default 8080; 0 picks a free port)
  --coap-port <port>    CoAP port, UDP (default 5683; 0 picks a free port)
  --key <key>           provision device key of the profile (default: demo value)
  --secret <secret>     provision device secret of the profile (default: demo value)
  --strategy <name>     allow-create | check-pre-provisioned | check-pre-provisioned-legacy |
                        disabled (default allow-create)
  --profile <name>      device profile name, given to created devices as their type
                        (default "default")
  --record-limit <n>    entries kept per recorded list, oldest dropped (default 10000)
  -h, --help            show this help

${CONTROL_USAGE}`;

const PORT_FLAGS: Partial<Record<ListenerName, string>> = {
  mqtt: '--mqtt-port',
  http: '--http-port',
  coap: '--coap-port',
};

class UsageError extends Error {}

interface CliSettings {
  host: string;
  mqttPort: number;
  httpPort: number;
  coapPort: number;
  key: string;
  secret: string;
  demoCredentials: boolean;
  strategy: ProvisionStrategy;
  profile: string;
  recordLimit: number | undefined;
}

function readSettings(argv: string[]): CliSettings | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      'mqtt-port': { type: 'string' },
      'http-port': { type: 'string' },
      'coap-port': { type: 'string' },
      key: { type: 'string' },
      secret: { type: 'string' },
      strategy: { type: 'string' },
      profile: { type: 'string' },
      'record-limit': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) return 'help';
  const strategy = values.strategy ?? 'allow-create';
  if (!(STRATEGIES as readonly string[]).includes(strategy)) {
    throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}`);
  }
  if ((values.key === undefined) !== (values.secret === undefined)) {
    throw new UsageError('give both --key and --secret, or neither for the demo values');
  }
  if (values.key === '' || values.secret === '') {
    throw new UsageError('--key and --secret must not be empty');
  }
  return {
    host: values.host ?? '127.0.0.1',
    mqttPort: port(values['mqtt-port'], '--mqtt-port', 1883),
    httpPort: port(values['http-port'], '--http-port', 8080),
    coapPort: port(values['coap-port'], '--coap-port', 5683),
    key: values.key ?? DEMO_KEY,
    secret: values.secret ?? DEMO_SECRET,
    demoCredentials: values.key === undefined,
    strategy: strategy as ProvisionStrategy,
    profile: values.profile ?? 'default',
    recordLimit: recordLimit(values['record-limit']),
  };
}

function recordLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError('--record-limit must be a whole number of at least 1');
  }
  return Number(text);
}

function port(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value > 65535) {
    throw new UsageError(`${flag} must be a port number from 0 to 65535`);
  }
  return value;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopback(host);
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

async function main(argv: string[]): Promise<number> {
  if ((CONTROL_COMMANDS as readonly string[]).includes(argv[0] ?? '')) {
    return runControlCommand(argv);
  }
  let settings: CliSettings | 'help';
  try {
    settings = readSettings(argv);
  } catch (error) {
    process.stderr.write(`tb-provision-emulator: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (settings === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const say = (line: string) => process.stdout.write(`${line}\n`);
  let emulator: Emulator;
  try {
    emulator = await Emulator.start({
      host: settings.host,
      mqttPort: settings.mqttPort,
      httpPort: settings.httpPort,
      coapPort: settings.coapPort,
      profiles: [
        {
          name: settings.profile,
          provisionDeviceKey: settings.key,
          provisionDeviceSecret: settings.secret,
          strategy: settings.strategy,
        },
      ],
      recordLimit: settings.recordLimit,
      log: (line) => say(`${new Date().toISOString()} ${line}`),
    });
  } catch (error) {
    if (error instanceof EmulatorListenError) {
      const hint =
        error.code === 'EADDRINUSE'
          ? `; choose another with ${PORT_FLAGS[error.listener] ?? 'its port option'} (0 picks a free one)`
          : '';
      process.stderr.write(`tb-provision-emulator: ${error.message}${hint}\n`);
      return 1;
    }
    throw error;
  }

  const host = urlHost(emulator.host);
  say('ThingsBoard emulator listening on');
  say(`  mqtt://${host}:${emulator.ports.mqtt}   (username "provision", topic /provision/request)`);
  say(`  http://${host}:${emulator.ports.http}/api/v1/provision`);
  say(`  coap://${host}:${emulator.ports.coap}/api/v1/provision`);
  say('  and the device and gateway API on the same ports');
  say(`Control route: http://${host}:${emulator.ports.http}/emulator/ (this machine only; --help)`);
  say(`Profile "${settings.profile}", strategy ${settings.strategy}`);
  if (settings.demoCredentials) {
    say(
      `  provision key "${DEMO_KEY}", secret "${DEMO_SECRET}" (demo values: pass --key/--secret)`,
    );
  } else {
    // The key only names the profile; the secret is shown not even in part.
    say(`  provision key ${mask(settings.key)}, secret set (${settings.secret.length} characters)`);
  }
  if (settings.demoCredentials && !isLoopbackHost(settings.host)) {
    process.stderr.write(
      `WARNING: listening on ${settings.host} with the demo provision key and secret, which ` +
        'everybody knows: anyone who can reach this machine can create devices here. Pass ' +
        '--key and --secret, or --host 127.0.0.1.\n',
    );
  }
  say('Press Ctrl+C to stop.');

  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  say('Stopping.');
  await emulator.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`tb-provision-emulator: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
