#!/usr/bin/env node
/**
 * tb-provision-store: copies the credentials one store keeps into another (a Node-RED user
 * directory's file into Redis, and back), for an installation that grows from one instance to
 * several. Idempotent; prints device names and counts, never a credential or a password.
 */

import { isDeepStrictEqual, parseArgs } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { errorText } from '../protocol/errors';
import { keyOf } from './entry';
import { defaultStorePath, openFileStore } from './file';
import { DEFAULT_REDIS_PREFIX, openRedisStore } from './redis';
import type { CredentialStore, StoredEntry } from './types';

export const PASSWORD_VARIABLE = 'TB_PROVISION_REDIS_PASSWORD';

const USAGE = `Usage: tb-provision-store copy --from <store> --to <store> [options]

Copies every credentials entry of one store into another: entries the target lacks are added,
entries it holds alike are left, entries it holds differently are reported and left (unless
--overwrite). Running it again changes nothing. A file store is locked while its Node-RED runs:
stop that Node-RED first.

A store is
  file:<dir>             the store in a Node-RED user directory (e.g. file:$HOME/.node-red)
  file:<file>.json       that credentials file
  redis://host:6379/0    a Redis store; rediss:// for TLS; never a password in the URL: set
                         ${PASSWORD_VARIABLE} instead

Options:
  --from-prefix <p>      key prefix of a Redis source (default ${DEFAULT_REDIS_PREFIX})
  --to-prefix <p>        key prefix of a Redis target (default ${DEFAULT_REDIS_PREFIX})
  --redis-ca <file>      CA certificate (PEM) to verify a rediss:// server with
  --overwrite            replace entries the target holds differently
  -h, --help             show this help

Exit status: 0 copied (or nothing to do), 2 some entries differ and were left, 1 an error.`;

class UsageError extends Error {}

interface Output {
  out(line: string): void;
  err(line: string): void;
}

interface Listable extends CredentialStore {
  entries(onDamaged?: (key: string, problem: string) => void): AsyncGenerator<StoredEntry>;
}

function openNamed(spec: string, prefix: string | undefined, caFile: string | undefined): Listable {
  if (spec.startsWith('file:')) {
    const target = path.resolve(spec.slice('file:'.length) || '.');
    const isFile = target.endsWith('.json');
    return openFileStore({ filePath: isFile ? target : defaultStorePath(target) });
  }
  if (/^rediss?:\/\//.test(spec)) {
    return openRedisStore({
      url: spec,
      prefix,
      password: process.env[PASSWORD_VARIABLE] || undefined,
      tls: caFile ? { ca: fs.readFileSync(caFile) } : undefined,
    });
  }
  throw new UsageError(`${JSON.stringify(spec)} is no store: use file:<dir> or redis://...`);
}

const quoted = (names: string[]) => names.map((name) => JSON.stringify(name)).join(', ');

/** Runs the command line `argv` (without node and script); resolves with the exit status. */
export async function runStoreCommand(argv: string[], output: Output): Promise<number> {
  let from: Listable | undefined;
  let to: Listable | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        from: { type: 'string' },
        to: { type: 'string' },
        'from-prefix': { type: 'string' },
        'to-prefix': { type: 'string' },
        'redis-ca': { type: 'string' },
        overwrite: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      output.out(USAGE);
      return 0;
    }
    if (positionals.length !== 1 || positionals[0] !== 'copy') {
      throw new UsageError('Name the command: copy');
    }
    if (!values.from || !values.to) throw new UsageError('Name both stores: --from and --to');
    from = openNamed(values.from, values['from-prefix'], values['redis-ca']);
    to = openNamed(values.to, values['to-prefix'], values['redis-ca']);
    await Promise.all([from.ready(), to.ready()]);
    let copied = 0;
    let alike = 0;
    const differing: string[] = [];
    const damaged = (key: string, problem: string) => output.err(`Skipped ${key}: ${problem}`);
    for await (const entry of from.entries(damaged)) {
      const present = await to.get(keyOf(entry));
      if (isDeepStrictEqual(present, entry)) {
        alike += 1;
        continue;
      }
      if (present && !values.overwrite) {
        differing.push(entry.deviceName);
        continue;
      }
      await to.put(entry);
      copied += 1;
    }
    output.out(
      `From ${from.describe()} to ${to.describe()}: ${copied} copied, ${alike} already there` +
        (differing.length > 0
          ? `, ${differing.length} held differently there and left as they are (--overwrite ` +
            `replaces them): ${quoted(differing)}`
          : '') +
        '.',
    );
    return differing.length > 0 ? 2 : 0;
  } catch (err) {
    output.err(`tb-provision-store: ${errorText(err)}`);
    if (
      err instanceof UsageError ||
      (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      output.err('Run tb-provision-store --help for the usage.');
    }
    return 1;
  } finally {
    await Promise.all([from?.release(), to?.release()]);
  }
}

if (require.main === module) {
  void runStoreCommand(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  }).then((status) => {
    process.exitCode = status;
  });
}
