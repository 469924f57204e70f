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

interface WriteJob {
  kind: 'write';
  id: number;
  dir: string;
  temp: string;
  target: string;
  content: string;
}

interface AppendJob {
  kind: 'append';
  id: number;
  dir: string;
  file: string;
  content: string;
}

interface FilesJob {
  kind: 'close' | 'remove';
  id: number;
  files: string[];
}

type Job = WriteJob | AppendJob | FilesJob;

/**
 * The writer thread's whole program. It runs from its source text in a thread of its own, so it
 * closes over nothing in this module and loads what it needs itself.
 */
function writerThread(): void {
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  if (!parentPort) return;
  const port = parentPort;

  /** Journals being appended to: path -> file descriptor. */
  const journals = new Map<string, number>();

  const quietly = (step: () => void): void => {
    try {
      step();
    } catch {
      // Cleaning up after a failure that is reported already.
    }
  };

  const closeJournal = (file: string): void => {
    const fd = journals.get(file);
    if (fd === undefined) return;
    journals.delete(file);
    quietly(() => fs.closeSync(fd));
  };

  const syncFolder = (dir: string): void => {
    let fd: number | undefined;
    try {
      fd = fs.openSync(dir, 'r');
      fs.fsyncSync(fd);
    } catch (err) {
      // Windows cannot open or flush a folder; its rename is already durable metadata-wise.
      const code = (err as NodeJS.ErrnoException).code;
      if (process.platform !== 'win32' && code !== 'EISDIR' && code !== 'EINVAL') throw err;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  };

  const write = ({ dir, temp, target, content }: WriteJob): void => {
    let fd: number | undefined;
    try {
      fd = fs.openSync(temp, 'wx', 0o600);
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = undefined;
      fs.renameSync(temp, target);
    } catch (err) {
      const open = fd;
      if (open !== undefined) quietly(() => fs.closeSync(open));
      quietly(() => fs.rmSync(temp, { force: true }));
      throw err;
    }
    syncFolder(dir);
  };

  const append = ({ dir, file, content }: AppendJob): void => {
    let fd = journals.get(file);
    if (fd !== undefined) {
      try {
        fs.writeFileSync(fd, content);
        fs.fdatasyncSync(fd);
      } catch (err) {
        // After a failed write or flush the file's tail is unknown: never appended to again.
        closeJournal(file);
        throw err;
      }
      return;
    }
    // 'ax': a journal is only ever new here; an old one (perhaps torn by a crash) is never reopened.
    fd = fs.openSync(file, 'ax', 0o600);
    const created = fd;
    try {
      fs.writeFileSync(created, content);
      fs.fsyncSync(created);
      syncFolder(dir);
    } catch (err) {
      quietly(() => fs.closeSync(created));
      throw err;
    }
    journals.set(file, created);
  };

  port.on('message', (job: Job) => {
    try {
      if (job.kind === 'write') write(job);
      else if (job.kind === 'append') append(job);
      else if (job.kind === 'close') job.files.forEach(closeJournal);
      else {
        for (const file of job.files) {
          closeJournal(file);
          quietly(() => fs.rmSync(file, { force: true }));
        }
      }
      port.postMessage({ id: job.id });
    } catch (err) {
      const { message, code, errno, syscall, path } = err as NodeJS.ErrnoException;
      port.postMessage({ id: job.id, error: { message, code, errno, syscall, path } });
    }
  });
}

// esbuild (which transpiles this file for the tests) names functions through a `__name` helper
// that a thread started from source text would not have.
const WORKER_SOURCE = `const __name = (fn) => fn;\n(${writerThread.toString()})();`;

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

type JobWithoutId = Omit<WriteJob, 'id'> | Omit<AppendJob, 'id'> | Omit<FilesJob, 'id'>;

function send(job: JobWithoutId): Promise<void> {
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
