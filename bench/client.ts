/**
 * One measured row in a fresh process: `node .cache/bench/client.js '<RowSpec JSON>'`. Prints the
 * RowResult on one line prefixed with RESULT_PREFIX.
 */

import fs from 'node:fs';
import { Session } from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import { measure, printResult } from './common';
import type { RowSpec, TimedHooks } from './common';
import { productClient } from './product';
import { fastestRawClient, flushedToDisk, rawClient } from './raw';

function post(session: Session, method: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    session.post(method, (err, result) => (err ? reject(err) : resolve(result))),
  );
}

/** A CPU profile of the timed part, written to `file`. */
function profileInto(file: string): TimedHooks {
  const session = new Session();
  return {
    async start() {
      session.connect();
      await post(session, 'Profiler.enable');
      await post(session, 'Profiler.start');
    },
    async stop() {
      const { profile } = (await post(session, 'Profiler.stop')) as { profile: unknown };
      fs.writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as RowSpec;
  let stop = async (): Promise<void> => undefined;
  let provision: (deviceName: string) => Promise<unknown>;
  let flushes: number[] | undefined;
  if (spec.kind === 'product') {
    const product = await productClient(spec);
    provision = product.provision;
    stop = product.stop;
  } else if (spec.flushed) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-bench-flushed-'));
    flushes = [];
    provision = flushedToDisk(
      fastestRawClient(spec.transport, spec.emulator),
      path.join(dir, 'journal'),
      flushes,
    );
    stop = async () => fs.promises.rm(dir, { recursive: true, force: true });
  } else {
    provision = rawClient(spec.transport, spec.emulator, spec.floor);
  }
  const profile = spec.cpuProfile ? profileInto(spec.cpuProfile) : undefined;
  const result = await measure(spec, provision, {
    async start() {
      // The warm-up's flushes are not part of the row.
      flushes?.splice(0);
      await profile?.start();
    },
    async stop() {
      await profile?.stop();
    },
  });
  if (flushes) result.flushes = flushes;
  await printResult(result);
  await stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench client: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
