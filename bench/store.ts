/**
 * Credential store throughput: 10 000 durable puts at concurrency 32 into a fresh store, against
 * baselines measured in the same run with the same durable-write steps (temp file, fsync,
 * rename, folder fsync):
 *   - whole-file: group commit that rewrites the complete file for every commit (the simple design);
 *   - file/commit: group commit that writes each commit's entries to a new file (the store's
 *     design before its journal);
 *   - floor: one single durable write of all 10 000 entries (no store can do better).
 * Run: npx tsx bench/store.ts [puts] [concurrency]
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openFileStore } from '../src/store/file';
import type { StoredEntry } from '../src/store/types';

const PUTS = Number(process.argv[2] ?? 10_000);
const CONCURRENCY = Number(process.argv[3] ?? 32);

function entry(n: number): StoredEntry {
  return {
    host: 'thingsboard.example.com',
    provisionDeviceKey: 'bench-profile-key-0123456789',
    deviceName: `bench-device-${n}`,
    answer: {
      status: 'SUCCESS',
      credentialsType: 'MQTT_BASIC',
      credentialsValue: {
        clientId: `bench-device-${n}-AbCdEfGh1234`,
        userName: 'u'.repeat(20),
        password: 'p'.repeat(32),
      },
    },
    provisionedAt: new Date().toISOString(),
  };
}

async function durableWrite(file: string, content: string): Promise<void> {
  const temp = `${file}.tmp`;
  const handle = await fs.open(temp, 'w', 0o600);
  await handle.writeFile(content);
  await handle.sync();
  await handle.close();
  await fs.rename(temp, file);
  const dir = await fs.open(path.dirname(file), 'r');
  await dir.sync();
  await dir.close();
}

async function runWorkers(put: (n: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < PUTS) await put(next++);
    }),
  );
  return performance.now() - started;
}

async function benchStore(dir: string): Promise<{ ms: number; releaseMs: number; note: string }> {
  const store = openFileStore({ filePath: path.join(dir, 'credentials.json') });
  await store.ready();
  const ms = await runWorkers((n) => store.put(entry(n)));
  const stats = store.stats();
  const started = performance.now();
  await store.release();
  const releaseMs = performance.now() - started;
  const size = (await fs.stat(path.join(dir, 'credentials.json'))).size;
  return {
    ms,
    releaseMs,
    note: `${stats.commits} commits, ${stats.compactions} snapshots, final file ${size} B`,
  };
}

/** Group commit: puts that arrive during a write share the next one, written by `write`. */
async function benchGroupCommit(
  write: (batch: StoredEntry[], all: Map<string, StoredEntry>) => Promise<number>,
): Promise<{ ms: number; note: string }> {
  const entries = new Map<string, StoredEntry>();
  let waiting: Array<{ entry: StoredEntry; done: () => void }> = [];
  let writing: Promise<void> | undefined;
  let commits = 0;
  let bytes = 0;
  async function drain(): Promise<void> {
    while (waiting.length > 0) {
      const batch = waiting;
      waiting = [];
      bytes += await write(
        batch.map((w) => w.entry),
        entries,
      );
      commits++;
      for (const { done } of batch) done();
    }
    writing = undefined;
  }
  const ms = await runWorkers((n) => {
    const e = entry(n);
    entries.set(e.deviceName, e);
    const durable = new Promise<void>((resolve) => waiting.push({ entry: e, done: resolve }));
    writing ??= drain();
    return durable;
  });
  return { ms, note: `${commits} commits, ${(bytes / 1e6).toFixed(0)} MB written` };
}

/** The simple design: every commit rewrites the complete file. */
function benchWholeFile(dir: string): Promise<{ ms: number; note: string }> {
  return benchGroupCommit(async (_batch, all) => {
    const content = JSON.stringify({ version: 1, entries: [...all.values()] });
    await durableWrite(path.join(dir, 'whole.json'), content);
    return content.length;
  });
}

/** A new complete file per commit (this store's earlier design), none ever folded away. */
function benchFilePerCommit(dir: string): Promise<{ ms: number; note: string }> {
  let files = 0;
  return benchGroupCommit(async (batch) => {
    const content = JSON.stringify({ version: 1, entries: batch });
    await durableWrite(path.join(dir, `per-commit-${++files}.json`), content);
    return content.length;
  });
}

async function benchFloor(dir: string): Promise<number> {
  const entries = Array.from({ length: PUTS }, (_, n) => entry(n));
  const started = performance.now();
  await durableWrite(path.join(dir, 'floor.json'), JSON.stringify({ version: 1, entries }));
  return performance.now() - started;
}

async function main(): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-store-bench-'));
  try {
    const floor = await benchFloor(root);
    const whole = await benchWholeFile(root);
    const perCommit = await benchFilePerCommit(root);
    const store = await benchStore(root);
    const line = (name: string, ms: number, note: string): void =>
      console.log(
        `${name.padEnd(12)} ${ms.toFixed(0).padStart(7)} ms  ${((ms * 1000) / PUTS).toFixed(1).padStart(7)} us/put  ` +
          `x${(ms / floor).toFixed(1).padStart(6)} floor  ${note}`,
      );
    console.log(`${PUTS} puts, concurrency ${CONCURRENCY}, in ${root}`);
    line('floor', floor, 'one durable write of everything');
    line('whole-file', whole.ms, whole.note);
    line('file/commit', perCommit.ms, perCommit.note);
    line('store', store.ms, store.note);
    console.log(
      `store is ${(whole.ms / store.ms).toFixed(1)}x faster than whole-file rewrites and ` +
        `${(perCommit.ms / store.ms).toFixed(1)}x faster than a file per commit; ` +
        `final release (fold into one file) ${store.releaseMs.toFixed(0)} ms`,
    );
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

void main();
