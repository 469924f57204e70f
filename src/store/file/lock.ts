/**
 * One process at a time per store folder. The lock is a symbolic link whose target names its
 * holder: created atomically, read whole, and made without writing any file data. Where links
 * cannot be made (Windows without the privilege) it is a file created exclusively.
 *
 * A lock whose holder is gone — on this host, and its process no longer running, or its pid now
 * used by a process started later — is taken over. Two starters that find the same dead holder
 * race for a marker named after that holder's lock; only the winner removes the lock, and only
 * while it is still the dead holder's, so a lock just taken by a live process is never removed.
 */
import crypto from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { StoreUnavailableError } from '../errors';

export interface LockHolder {
  pid: number;
  host: string;
  /** When it took the lock, ISO-8601. */
  since: string;
  /** New for every taking: tells two holders with the same pid apart. */
  nonce: string;
  /** Linux: the kernel's boot id; a lock from before a reboot has no live holder. */
  boot?: string;
  /** Linux: the holder's start time in clock ticks since boot; another one means a reused pid. */
  started?: string;
}

/** Locks this process holds: nonce → lock file. */
const heldHere = new Map<string, string>();
/** Nonces of this process's takings under way, which may hold a takeover marker. */
const takingHere = new Set<string>();
/** Releases under way, by lock file: taking that lock again waits for them. */
const releasing = new Map<string, Promise<void>>();

const MAX_ATTEMPTS = 200;
const RETRY_MS = 20;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat. The command name (field 2) may hold spaces: count after its ')'. */
async function startTicks(pid: number): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  const stat = await readOptional(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

async function newHolder(): Promise<LockHolder> {
  const holder: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    since: new Date().toISOString(),
    nonce: crypto.randomBytes(12).toString('hex'),
  };
  if (process.platform === 'linux') {
    const boot = await readOptional('/proc/sys/kernel/random/boot_id');
    const started = await startTicks(process.pid);
    if (boot) holder.boot = boot;
    if (started) holder.started = started;
  }
  return holder;
}

function parseHolder(text: string): LockHolder | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const holder = value as Record<string, unknown>;
  const { pid, host, since, nonce, boot, started } = holder;
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) return undefined;
  if (typeof host !== 'string' || typeof since !== 'string') return undefined;
  if (typeof nonce !== 'string' || !/^[0-9a-f]{8,64}$/.test(nonce)) return undefined;
  if (boot !== undefined && typeof boot !== 'string') return undefined;
  if (started !== undefined && typeof started !== 'string') return undefined;
  return holder as unknown as LockHolder;
}

/** True when the lock was made; false when one is there already. */
async function create(file: string, text: string): Promise<boolean> {
  try {
    await fs.symlink(text, file);
    return true;
  } catch (err) {
    if (codeOf(err) === 'EEXIST') return false;
    if (process.platform !== 'win32' || codeOf(err) !== 'EPERM') throw err;
  }
  try {
    await fs.writeFile(file, text, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if (codeOf(err) === 'EEXIST') return false;
    throw err;
  }
}

/** The holder named by a lock or marker; undefined when it is gone; 'unreadable' otherwise. */
async function readHolder(file: string): Promise<LockHolder | 'unreadable' | undefined> {
  let text: string;
  try {
    text = await fs.readlink(file);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return undefined;
    if (codeOf(err) !== 'EINVAL' && codeOf(err) !== 'UNKNOWN') throw err;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (readErr) {
      if (codeOf(readErr) === 'ENOENT') return undefined;
      throw readErr;
    }
  }
  return parseHolder(text) ?? 'unreadable';
}

/** True only when the holder certainly no longer runs; a holder on another host may. */
async function isGone(holder: LockHolder): Promise<boolean> {
  if (holder.host !== os.hostname()) return false;
  if (holder.boot !== undefined && process.platform === 'linux') {
    const boot = await readOptional('/proc/sys/kernel/random/boot_id');
    if (boot !== undefined && boot !== holder.boot) return true;
  }
  // Our own pid: an earlier process that had it (a container restarted), unless it is ours now.
  if (holder.pid === process.pid) {
    return !heldHere.has(holder.nonce) && !takingHere.has(holder.nonce);
  }
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if (codeOf(err) === 'ESRCH') return true;
    // EPERM: it runs, as another user.
    if (codeOf(err) !== 'EPERM') return false;
  }
  if (holder.started === undefined) return false;
  const started = await startTicks(holder.pid);
  return started !== undefined && started !== holder.started;
}

function lockedError(file: string, folder: string, holder: LockHolder | undefined): Error {
  const store = `The credential store in ${folder}`;
  if (holder === undefined) {
    return new StoreUnavailableError(
      'locked',
      `${store} is locked by ${file}, which does not say who holds it. If no Node-RED process ` +
        'uses this folder, delete that file.',
    );
  }
  if (holder.pid === process.pid && holder.host === os.hostname()) {
    return new StoreUnavailableError(
      'locked',
      `${store} is already open in this process as ${heldHere.get(holder.nonce) ?? file}: ` +
        'open it under one path only.',
    );
  }
  const sameHost = holder.host === os.hostname();
  return new StoreUnavailableError(
    'locked',
    `${store} is in use by another Node-RED process: pid ${holder.pid} on ` +
      `${sameHost ? 'this host' : 'host'} ${holder.host}, since ${holder.since}. One store ` +
      'folder serves one process at a time: stop that process, or give this one its own user ' +
      `directory.${sameHost ? '' : ` If that process no longer runs, delete ${file}.`}`,
  );
}

/**
 * Removes the lock of `stale`, a holder that is gone, unless another starter is doing it or the
 * lock has changed meanwhile. The caller then tries to take the lock again.
 */
async function takeOver(
  file: string,
  folder: string,
  stale: LockHolder,
  me: string,
): Promise<void> {
  const marker = `${file}.takeover-${stale.nonce}`;
  if (!(await create(marker, me))) {
    const taker = await readHolder(marker);
    if (taker !== undefined && taker !== 'unreadable' && (await isGone(taker))) {
      throw new StoreUnavailableError(
        'locked',
        `The credential store in ${folder} is locked by process ${stale.pid}, which no longer ` +
          `runs, and taking it over was interrupted. If no Node-RED process uses this folder, ` +
          `delete ${file} and ${marker}.`,
      );
    }
    await sleep(RETRY_MS);
    return;
  }
  try {
    const current = await readHolder(file);
    if (current !== undefined && current !== 'unreadable' && current.nonce === stale.nonce) {
      await fs.rm(file, { force: true });
    }
  } finally {
    await fs.rm(marker, { force: true });
  }
}

/** The lock on a store folder, held by this process until released. */
export class StoreLock {
  private released: Promise<void> | undefined;

  constructor(
    readonly file: string,
    readonly holder: LockHolder,
  ) {}

  /** Removes the lock file if it is still this one's (idempotent; never rejects). */
  release(): Promise<void> {
    if (!this.released) {
      const done = (async () => {
        const current = await readHolder(this.file).catch(() => undefined);
        if (current !== undefined && current !== 'unreadable') {
          if (current.nonce === this.holder.nonce) {
            await fs.rm(this.file, { force: true }).catch(() => undefined);
          }
        }
        heldHere.delete(this.holder.nonce);
      })();
      this.released = done;
      releasing.set(this.file, done);
      void done.then(() => {
        if (releasing.get(this.file) === done) releasing.delete(this.file);
      });
    }
    return this.released;
  }
}

/**
 * Takes the lock `file` of the store folder `folder`. Rejects with a StoreUnavailableError naming
 * the holder when a live process holds it; with the file system's error when it cannot be made.
 */
export async function takeStoreLock(file: string, folder: string): Promise<StoreLock> {
  await releasing.get(file);
  const me = await newHolder();
  takingHere.add(me.nonce);
  try {
    return await take(file, folder, me);
  } finally {
    takingHere.delete(me.nonce);
  }
}

async function take(file: string, folder: string, me: LockHolder): Promise<StoreLock> {
  const text = JSON.stringify(me);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (await create(file, text)) {
      heldHere.set(me.nonce, file);
      return new StoreLock(file, me);
    }
    const holder = await readHolder(file);
    if (holder === undefined) continue;
    if (holder === 'unreadable') {
      // A lock file (not a link) may be seen between its creation and its content.
      if (attempt < 10) {
        await sleep(RETRY_MS);
        continue;
      }
      throw lockedError(file, folder, undefined);
    }
    if (!(await isGone(holder))) throw lockedError(file, folder, holder);
    await takeOver(file, folder, holder, text);
  }
  throw lockedError(file, folder, undefined);
}
