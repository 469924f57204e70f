/**
 * Durable file writes off the event loop. One worker thread per process runs each write as plain
 * synchronous calls — complete new file, fsync, rename over the final name, fsync the folder — so
 * a group commit costs the event loop one message instead of eight thread-pool round trips (those
 * were a quarter of the provision node's event-loop time at a thousand devices per second).
 */
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');

function syncFolder(dir) {
  let fd;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    // Windows cannot open or flush a folder; its rename is already durable metadata-wise.
    if (process.platform !== 'win32' && err.code !== 'EISDIR' && err.code !== 'EINVAL') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function write({ dir, temp, target, content }) {
  let fd;
  try {
    fd = fs.openSync(temp, 'wx', 0o600);
    fs.writeFileSync(fd, content);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, target);
  } catch (err) {
    if (fd !== undefined) try { fs.closeSync(fd); } catch {}
    try { fs.rmSync(temp, { force: true }); } catch {}
    throw err;
  }
  syncFolder(dir);
}

parentPort.on('message', (job) => {
  try {
    if (job.kind === 'write') write(job);
    else for (const file of job.files) try { fs.rmSync(file, { force: true }); } catch {}
    parentPort.postMessage({ id: job.id });
  } catch (err) {
    parentPort.postMessage({
      id: job.id,
      error: { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall, path: err.path },
    });
  }
});
`;

interface Reply {
  id: number;
  error?: { message: string; code?: string; errno?: number; syscall?: string; path?: string };
}

interface Pending {
  resolve(): void;
  reject(err: unknown): void;
}

let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, Pending>();

function failAll(err: unknown): void {
  const waiting = [...pending.values()];
  pending.clear();
  worker = undefined;
  for (const job of waiting) job.reject(err);
}

function startWorker(): Worker {
  const started = new Worker(WORKER_SOURCE, { eval: true });
  started.on('message', (reply: Reply) => {
    const job = pending.get(reply.id);
    pending.delete(reply.id);
    // Idle, the worker must not keep the process alive.
    if (pending.size === 0) started.unref();
    if (!job) return;
    if (reply.error) job.reject(Object.assign(new Error(reply.error.message), reply.error));
    else job.resolve();
  });
  started.on('error', (err) => {
    if (worker === started) failAll(err);
  });
  started.on('exit', (code) => {
    if (worker === started)
      failAll(new Error(`The file writer thread stopped (exit code ${code})`));
  });
  return started;
}

function send(job: Record<string, unknown>): Promise<void> {
  worker ??= startWorker();
  const id = ++nextId;
  const done = new Promise<void>((resolve, reject) => pending.set(id, { resolve, reject }));
  if (pending.size === 1) worker.ref();
  worker.postMessage({ ...job, id });
  return done;
}

/** Ends the writer thread when it has nothing to do; the next write starts a new one. */
export function stopFileWriter(): void {
  if (worker === undefined || pending.size > 0) return;
  const stopping = worker;
  worker = undefined;
  void stopping.terminate();
}

/** Writes `content` to `target` durably through `temp` (same folder `dir`); no torn file ever. */
export function writeFileDurably(
  dir: string,
  temp: string,
  target: string,
  content: string,
): Promise<void> {
  return send({ kind: 'write', dir, temp, target, content });
}

/** Removes files, ignoring those already gone or that cannot be removed. */
export function removeFiles(files: string[]): Promise<void> {
  return send({ kind: 'remove', files });
}
