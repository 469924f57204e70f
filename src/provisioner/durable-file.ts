/**
 * Durable file writes off the event loop. One worker thread per process runs each job as plain
 * synchronous calls, so a group commit costs the event loop one message instead of several
 * thread-pool round trips (those were a quarter of the provision node's event-loop time at a
 * thousand devices per second). Two kinds of write:
 *   - a complete file: new file, fsync, rename over the final name, fsync the folder;
 *   - an append to a journal the thread keeps open: the first append creates the file and
 *     flushes it and its folder, each later one is a write and an fdatasync.
 */
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');

/** Journals being appended to: path -> file descriptor. */
const journals = new Map();

function closeJournal(file) {
  const fd = journals.get(file);
  if (fd === undefined) return;
  journals.delete(file);
  try { fs.closeSync(fd); } catch {}
}

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

function append({ dir, file, content }) {
  let fd = journals.get(file);
  const created = fd === undefined;
  try {
    // 'ax': a journal is only ever new here; an old one (perhaps torn by a crash) is never reopened.
    if (created) fd = fs.openSync(file, 'ax', 0o600);
    fs.writeFileSync(fd, content);
    if (created) fs.fsyncSync(fd);
    else fs.fdatasyncSync(fd);
    if (created) {
      journals.set(file, fd);
      syncFolder(dir);
    }
  } catch (err) {
    // After a failed write or flush the file's tail is unknown: it is never appended to again.
    if (created && fd !== undefined && !journals.has(file)) try { fs.closeSync(fd); } catch {}
    closeJournal(file);
    throw err;
  }
}

function remove({ files }) {
  for (const file of files) {
    closeJournal(file);
    try { fs.rmSync(file, { force: true }); } catch {}
  }
}

parentPort.on('message', (job) => {
  try {
    if (job.kind === 'write') write(job);
    else if (job.kind === 'append') append(job);
    else if (job.kind === 'close') for (const file of job.files) closeJournal(file);
    else remove(job);
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

/**
 * Appends `content` to the journal `file` and flushes it. The first append creates the file (it
 * must not exist) and also flushes the folder `dir`; after a failed append the journal is closed
 * and a later append to the same path fails, so a fresh journal must be started.
 */
export function appendDurably(dir: string, file: string, content: string): Promise<void> {
  return send({ kind: 'append', dir, file, content });
}

/** Closes journals the thread holds open; the files stay. */
export function closeJournals(files: string[]): Promise<void> {
  return send({ kind: 'close', files });
}

/** Removes files (closing any that is an open journal), ignoring those already gone. */
export function removeFiles(files: string[]): Promise<void> {
  return send({ kind: 'remove', files });
}
