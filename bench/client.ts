/**
 * One measured row in a fresh process: `node .cache/bench/client.js '<RowSpec JSON>'`. Prints the
 * RowResult on one line prefixed with RESULT_PREFIX.
 */

import fs from 'node:fs';
import { Session } from 'node:inspector';
import { measure, printResult } from './common';
import type { RowSpec } from './common';
import { productClient } from './product';
import { rawClient } from './raw';

function post(session: Session, method: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    session.post(method, (err, result) => (err ? reject(err) : resolve(result))),
  );
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as RowSpec;
  let stop = async (): Promise<void> => undefined;
  let provision: (deviceName: string) => Promise<void>;
  if (spec.kind === 'product') {
    const product = await productClient(spec);
    provision = product.provision;
    stop = product.stop;
  } else {
    provision = rawClient(spec.transport, spec.emulator);
  }
  let session: Session | undefined;
  if (spec.cpuProfile) {
    session = new Session();
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.start');
  }
  const result = await measure(spec, provision);
  if (session && spec.cpuProfile) {
    const { profile } = (await post(session, 'Profiler.stop')) as { profile: unknown };
    fs.writeFileSync(spec.cpuProfile, JSON.stringify(profile));
    session.disconnect();
  }
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
