/**
 * A real write failure that root cannot override: the file size limit (RLIMIT_FSIZE) of one
 * process, set from outside with util-linux's prlimit. With a soft limit of 1 byte, every write
 * that grows a file fails with EFBIG (Node ignores SIGXFSZ), as on a full disk; writes to pipes
 * are not limited. Never lower it in the test runner itself: its output may be a file.
 */
import { execFileSync } from 'node:child_process';

let available: boolean | undefined;

/** Whether prlimit can be used here (Linux with util-linux). */
export function canLimitFileSize(): boolean {
  if (available === undefined) {
    try {
      execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
      available = process.platform === 'linux';
    } catch {
      available = false;
    }
  }
  return available;
}

/** Lets process `pid` grow no file beyond `bytes` (soft limit), or lifts the limit. */
export function limitFileSize(pid: number, bytes: number | 'unlimited'): void {
  execFileSync('prlimit', ['--pid', String(pid), `--fsize=${bytes}:`]);
}
