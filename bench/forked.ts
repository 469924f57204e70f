/** For the benches that run each row in a child of their own file: forking one, settled memory. */

import { fork } from 'node:child_process';

/** Forks `file` with `args`; resolves with the first message it sends, and a way to stop it. */
export function forkChild<T>(
  file: string,
  args: string[],
  execArgv: string[] = [],
): Promise<{ value: T; stop(): void }> {
  const forked = fork(file, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv, ...execArgv],
  });
  return new Promise((resolve, reject) => {
    forked.once('error', reject);
    forked.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code})`)));
    forked.once('message', (value: T) => {
      forked.removeAllListeners('exit');
      resolve({ value, stop: () => forked.send('stop') });
    });
  });
}

/** Memory after three forced collections (run with --expose-gc, else as it is). */
export function settledMemory(): NodeJS.MemoryUsage {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) gc?.();
  return process.memoryUsage();
}
