/**
 * tb-provision-store copy: a file store into Redis and back, idempotent, conflicts reported and
 * left alone, and no credential or password in what it prints.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PASSWORD_VARIABLE, runStoreCommand } from '../src/store/cli';
import { defaultStorePath, deviceKey, openFileStore, openRedisStore } from '../src/store';
import { RedisConnection } from '../src/store/redis/connection';
import { redisEndpoint } from '../src/store/redis/options';
import { RedisServer } from './support/redis-server';
import { ENTRY_HOST, ENTRY_PROFILE_KEY, storedEntry } from './support/stored-entries';

const PASSWORD = 'copy-pass-W3';
const keyOf = (name: string) => deviceKey(ENTRY_HOST, ENTRY_PROFILE_KEY, name);

/** Runs the command in this process; answers its exit status and everything it printed. */
async function copy(...argv: string[]): Promise<{ status: number; printed: string }> {
  const lines: string[] = [];
  const status = await runStoreCommand(argv, {
    out: (line) => lines.push(line),
    err: (line) => lines.push(line),
  });
  return { status, printed: lines.join('\n') };
}

describe('tb-provision-store copy', function () {
  this.timeout(20_000);
  let redis: RedisServer;
  let userDir: string;

  before(async function () {
    redis = await RedisServer.start({ password: PASSWORD });
    process.env[PASSWORD_VARIABLE] = PASSWORD;
  });
  after(async function () {
    Reflect.deleteProperty(process.env, PASSWORD_VARIABLE);
    await redis.stop();
  });
  beforeEach(async function () {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-copy-'));
    const file = openFileStore({ filePath: defaultStorePath(userDir) });
    await file.ready();
    for (let i = 0; i < 30; i++) await file.put(storedEntry(`copied-${i}`, `secret-token-${i}`));
    await file.release();
  });
  afterEach(async function () {
    const raw = new RedisConnection(redisEndpoint({ url: redis.url, password: PASSWORD }));
    await raw.command(['FLUSHALL']);
    raw.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('copies a file store into Redis, then again without changing anything, never printing a secret', async function () {
    const first = await copy('copy', '--from', `file:${userDir}`, '--to', redis.url);
    assert.equal(first.status, 0, first.printed);
    assert.match(first.printed, /: 30 copied, 0 already there\.$/);
    const target = openRedisStore({ url: redis.url, password: PASSWORD });
    try {
      for (let i = 0; i < 30; i++) {
        assert.deepEqual(
          await target.get(keyOf(`copied-${i}`)),
          storedEntry(`copied-${i}`, `secret-token-${i}`),
        );
      }
    } finally {
      await target.release();
    }
    const again = await copy('copy', '--from', `file:${userDir}`, '--to', redis.url);
    assert.equal(again.status, 0);
    assert.match(again.printed, /: 0 copied, 30 already there\.$/);
    for (const printed of [first.printed, again.printed]) {
      assert.doesNotMatch(printed, /secret-token|copy-pass/);
    }
  });

  it('reports entries the target holds differently and leaves them, unless told to overwrite', async function () {
    const target = openRedisStore({ url: redis.url, prefix: 'plant-2:', password: PASSWORD });
    try {
      await target.put(storedEntry('copied-3', 'a-newer-token'));
      const args = [
        'copy',
        '--from',
        `file:${defaultStorePath(userDir)}`,
        '--to',
        redis.url,
        '--to-prefix',
        'plant-2:',
      ];
      const left = await copy(...args);
      assert.equal(left.status, 2);
      assert.match(
        left.printed,
        /29 copied, 0 already there, 1 held differently there and left as they are \(--overwrite replaces them\): "copied-3"\.$/,
      );
      assert.doesNotMatch(left.printed, /a-newer-token|secret-token/);
      assert.deepEqual(
        await target.get(keyOf('copied-3')),
        storedEntry('copied-3', 'a-newer-token'),
      );
      const replaced = await copy(...args, '--overwrite');
      assert.equal(replaced.status, 0);
      assert.match(replaced.printed, /1 copied, 29 already there\.$/);
      assert.deepEqual(
        await target.get(keyOf('copied-3')),
        storedEntry('copied-3', 'secret-token-3'),
      );
    } finally {
      await target.release();
    }
  });

  it('copies Redis back into the file store of another user directory', async function () {
    assert.equal((await copy('copy', '--from', `file:${userDir}`, '--to', redis.url)).status, 0);
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-copy-back-'));
    try {
      const back = await copy('copy', '--from', redis.url, '--to', `file:${otherDir}`);
      assert.equal(back.status, 0, back.printed);
      assert.match(back.printed, /30 copied/);
      const file = openFileStore({ filePath: defaultStorePath(otherDir) });
      await file.ready();
      assert.equal(file.stats().entries, 30);
      assert.deepEqual(
        await file.get(keyOf('copied-7')),
        storedEntry('copied-7', 'secret-token-7'),
      );
      await file.release();
    } finally {
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('says what is wrong with a store it cannot use, and exits with 1', async function () {
    const bad = await copy(
      'copy',
      '--from',
      `file:${userDir}`,
      '--to',
      `redis://:${PASSWORD}@127.0.0.1:${redis.port}/0`,
    );
    assert.equal(bad.status, 1);
    assert.match(bad.printed, /The Redis URL contains a password/);
    assert.doesNotMatch(bad.printed, new RegExp(PASSWORD));
    const usage = await copy('move', '--from', 'x');
    assert.equal(usage.status, 1);
    assert.match(usage.printed, /Name the command: copy\nRun tb-provision-store --help/);
    const nowhere = await copy('copy', '--from', 'ftp://x', '--to', redis.url);
    assert.match(nowhere.printed, /"ftp:\/\/x" is no store/);
  });

  it('runs as the installed command (nodes/store/cli.js, built)', async function () {
    const cli = path.resolve(__dirname, '..', 'nodes', 'store', 'cli.js');
    const printed = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [cli, '--help'], (error, stdout) =>
        error ? reject(error) : resolve(stdout),
      ),
    );
    assert.match(printed, /^Usage: tb-provision-store copy --from <store> --to <store>/);
    assert.ok((fs.statSync(cli).mode & 0o111) !== 0, 'executable');
  });
});
