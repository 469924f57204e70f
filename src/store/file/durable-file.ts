/**
 * Durable file writes through Node's asynchronous file calls (libuv's thread pool), so the event
 * loop never waits on a disk. Two kinds:
 *   - a complete file: new file, fsync, rename over the final name, fsync the folder;
 *   - an append to a journal kept open here: the first append creates the file and flushes it
 *     and its folder, each later one is a synchronized write (see SYNCED_WRITES).
 */
import fs from 'node:fs';
import { promisify } from 'node:util';

/**
 * On Linux a journal is opened with O_DSYNC: one call to the thread pool per append instead of a
 * write and an fdatasync. Windows has no O_DSYNC, and on macOS it does not empty the disk's cache
 * as libuv's fdatasync does (F_FULLFSYNC), so there the write is followed by fdatasync.
 */
const SYNCED_WRITES = process.platform === 'linux' && fs.constants.O_DSYNC !== undefined;
const JOURNAL_FLAGS = SYNCED_WRITES
  ? fs.constants.O_WRONLY |
    fs.constants.O_CREAT |
    fs.constants.O_EXCL |
    fs.constants.O_APPEND |
    fs.constants.O_DSYNC
  : 'ax';

const write = promisify(fs.write);
const fdatasync = promisify(fs.fdatasync);
const close = promisify(fs.close);
const open = promisify(fs.open);
const fsync = promisify(fs.fsync);

/** Journals being appended to: path -> file descriptor. */
const journals = new Map<string, number>();

async function writeAll(fd: number, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length;) {
    const { bytesWritten } = await write(fd, data, offset, data.length - offset, null);
    offset += bytesWritten;
  }
}

/** Flushes a folder, so names created or renamed in it are durable. */
export async function syncFolder(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Windows cannot open or flush a folder; its rename is already durable metadata-wise.
    const code = (err as NodeJS.ErrnoException).code;
    if (process.platform !== 'win32' && code !== 'EISDIR' && code !== 'EINVAL') throw err;
  } finally {
    await handle?.close();
  }
}

async function closeJournal(file: string): Promise<void> {
  const fd = journals.get(file);
  if (fd === undefined) return;
  journals.delete(file);
  await close(fd).catch(() => undefined);
}

/** Writes `content` to `target` durably through `temp` (same folder `dir`); no torn file ever. */
export async function writeFileDurably(
  dir: string,
  temp: string,
  target: string,
  content: string,
): Promise<void> {
  try {
    const handle = await fs.promises.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temp, target);
  } catch (err) {
    await fs.promises.rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncFolder(dir);
}

/**
 * Appends `content` to the journal `file` and flushes it. The first append creates the file (it
 * must not exist) and also flushes the folder `dir`; after a failed append the journal is closed
 * and a later append to the same path fails, so a fresh journal must be started.
 */
export async function appendDurably(dir: string, file: string, content: string): Promise<void> {
  const data = Buffer.from(content);
  const journal = journals.get(file);
  if (journal !== undefined) {
    try {
      await writeAll(journal, data);
      if (!SYNCED_WRITES) await fdatasync(journal);
    } catch (err) {
      // After a failed write or flush the file's tail is unknown: never appended to again.
      await closeJournal(file);
      throw err;
    }
    return;
  }
  // Exclusive: a journal is only ever new here; an old one (perhaps torn by a crash) is never
  // reopened.
  const fd = await open(file, JOURNAL_FLAGS, 0o600);
  try {
    await writeAll(fd, data);
    await fsync(fd);
    await syncFolder(dir);
  } catch (err) {
    await close(fd).catch(() => undefined);
    // Nothing in it was acknowledged: no empty journal is left per failed try on a full disk.
    await fs.promises.rm(file, { force: true }).catch(() => undefined);
    throw err;
  }
  journals.set(file, fd);
}

/** Closes journals held open here; the files stay. */
export async function closeJournals(files: string[]): Promise<void> {
  await Promise.all(files.map(closeJournal));
}

/** Removes files (closing any that is an open journal), ignoring those already gone. */
export async function removeFiles(files: string[]): Promise<void> {
  for (const file of files) {
    await closeJournal(file);
    await fs.promises.rm(file, { force: true });
  }
}
