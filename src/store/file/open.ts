/**
 * Opening a store folder: locked for this process before anything in it is read, then read. A
 * folder that does not exist yet is read as empty and locked by the first write that makes it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorText } from '../../protocol/errors';
import { StoreUnavailableError, isStoreUnavailable } from '../errors';
import type { StoreWarningListener } from '../types';
import { loadFiles, type LoadedFiles } from './load';
import { takeStoreLock, type StoreLock } from './lock';

/** The refusal for a store whose files cannot be written, with what to do. */
export function notWritable(filePath: string, err: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    'notWritable',
    `The credentials file ${filePath} cannot be written: ${errorText(err)}. Free space on its ` +
      'disk, or give the user Node-RED runs as the right to write in its folder.',
    { cause: err },
  );
}

/** The lock of the store `filePath`'s folder; a lock that cannot be made is a refusal too. */
export async function lockFolder(filePath: string): Promise<StoreLock> {
  try {
    return await takeStoreLock(`${filePath}.lock`, path.dirname(filePath));
  } catch (err) {
    throw isStoreUnavailable(err) ? err : notWritable(filePath, err);
  }
}

async function isFolder(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw err;
  }
}

/** The files, read under the folder's lock when the folder exists (the lock is let go on failure). */
export async function openFolder(
  filePath: string,
  warn: StoreWarningListener,
): Promise<{ lock: StoreLock | undefined; files: LoadedFiles }> {
  const lock = (await isFolder(path.dirname(filePath))) ? await lockFolder(filePath) : undefined;
  try {
    return { lock, files: await loadFiles(filePath, warn) };
  } catch (err) {
    await lock?.release();
    throw err;
  }
}
