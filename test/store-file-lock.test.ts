/**
 * One process at a time per store folder, with real processes: a second opener is refused with
 * the holder named; the lock goes with a clean release; a dead holder's lock is taken over, by
 * exactly one of several starters at once; a pid that outlived its holder does not keep it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deviceKey } from '../src/store/entry';
import { StoreUnavailableError } from '../src/store/errors';
import { defaultStorePath, openFileStore, type FileCredentialStore } from '../src/store/file';
import { takeStoreLock, type StoreLock } from '../src/store/file/lock';
import type { StoredEntry } from '../src/store/types';
import { StoreProcess } from './support/store-process';

function entry(name: string): StoredEntry {
  return {
    host: 'tb.example.com',
    provisionDeviceKey: 'profile-key',
    deviceName: name,
    answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: `t-${name}` },
    provisionedAt: '2024-05-01T12:00:00.000Z',
  };
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(child.pid);
  return child.pid;
}

function writeLock(file: string, holder: Record<string, unknown>): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.symlinkSync(JSON.stringify(holder), `${file}.lock`);
}

describe('credential store: file backend, one process per folder', function () {
  this.timeout(30_000);
  let root: string;
  let file: string;
  const children: StoreProcess[] = [];
  const opened: FileCredentialStore[] = [];

  function open(): FileCredentialStore {
    const store = openFileStore({ filePath: file });
    opened.push(store);
    return store;
  }

  function start(put?: string, onGo = false): StoreProcess {
    const child = new StoreProcess(file, put, onGo);
    children.push(child);
    return child;
  }

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-lock-'));
    file = defaultStorePath(root);
  });

  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.kill()));
    await Promise.all(opened.splice(0).map((s) => s.release().catch(() => undefined)));
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a second process, naming the holder, and lets it in once the first has closed', async () => {
    const first = start(JSON.stringify(entry('from-first')));
    assert.deepEqual(await first.report, { holding: true });
    const second = start();
    const refusal = await second.report;
    assert.equal(refusal.reason, 'locked');
    assert.ok(refusal.refused?.includes(`pid ${first.pid}`), refusal.refused);
    assert.ok(refusal.refused?.includes(os.hostname()), refusal.refused);
    assert.ok(refusal.refused?.includes(path.dirname(file)), refusal.refused);
    await first.stop();
    assert.equal(fs.existsSync(`${file}.lock`), false, 'released on close');
    const third = start();
    assert.deepEqual(await third.report, { holding: true });
  });

  it('refuses to read the files in this process too while another holds them', async () => {
    const holder = start(JSON.stringify(entry('kept')));
    await holder.report;
    const store = open();
    await assert.rejects(store.ready(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.equal(err.reason, 'locked');
      assert.match(err.message, new RegExp(`pid ${holder.pid} on this host`));
      return true;
    });
    await assert.rejects(store.writable(), StoreUnavailableError);
    // Once the holder has gone, the next try opens it.
    await holder.stop();
    await store.ready();
    assert.ok(await store.get(deviceKey('tb.example.com', 'profile-key', 'kept')));
  });

  it('takes over the lock of a holder killed with SIGKILL', async () => {
    const killed = start(JSON.stringify(entry('before-kill')));
    await killed.report;
    await killed.kill();
    assert.ok(fs.lstatSync(`${file}.lock`).isSymbolicLink(), 'the dead holder left its lock');
    const store = open();
    await store.ready();
    assert.equal(await store.writable(), true);
    assert.equal(JSON.parse(fs.readlinkSync(`${file}.lock`)).pid, process.pid);
    await store.put(entry('after-kill'));
    await store.release();
    assert.equal(fs.existsSync(`${file}.lock`), false);
  });

  it('lets exactly one of several starters take over a dead holder’s lock', async () => {
    writeLock(file, {
      pid: await deadPid(),
      host: os.hostname(),
      since: new Date().toISOString(),
      nonce: 'abcdef0123456789',
    });
    const starters = [1, 2, 3, 4].map(() => start(undefined, true));
    // Loaded first, then all told at once: their takeovers overlap.
    await Promise.all(starters.map((s) => s.loaded));
    for (const starter of starters) starter.go();
    const reports = await Promise.all(starters.map((s) => s.report));
    const winners = starters.filter((_, i) => reports[i].holding === true);
    assert.equal(winners.length, 1, JSON.stringify(reports));
    for (const report of reports.filter((r) => !r.holding)) {
      assert.equal(report.reason, 'locked');
      assert.ok(report.refused?.includes(`pid ${winners[0].pid}`), report.refused);
    }
    const left = fs.readdirSync(path.dirname(file)).filter((n) => n.includes('takeover'));
    assert.deepEqual(left, [], 'no takeover marker left behind');
  });

  it('gives a dead holder’s lock to one of many takers racing for it at the same moment', async () => {
    writeLock(file, {
      pid: await deadPid(),
      host: os.hostname(),
      since: new Date().toISOString(),
      nonce: '9876543210abcdef',
    });
    const lockFile = `${file}.lock`;
    const takers = await Promise.allSettled(
      Array.from({ length: 20 }, () => takeStoreLock(lockFile, path.dirname(file))),
    );
    const won = takers.filter(
      (t): t is PromiseFulfilledResult<StoreLock> => t.status === 'fulfilled',
    );
    assert.equal(won.length, 1);
    for (const lost of takers.filter((t) => t.status === 'rejected')) {
      assert.match(String(lost.reason), /already open in this process/);
    }
    assert.equal(JSON.parse(fs.readlinkSync(lockFile)).nonce, won[0].value.holder.nonce);
    await won[0].value.release();
    assert.equal(fs.existsSync(lockFile), false);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), []);
  });

  it('takes over a lock whose pid is this process’s but was left by an earlier one', async () => {
    // A container restarted gives Node-RED the same pid again.
    writeLock(file, {
      pid: process.pid,
      host: os.hostname(),
      since: '2024-01-01T00:00:00.000Z',
      nonce: '0123456789abcdef',
    });
    const store = open();
    await store.ready();
    await store.writable();
    assert.notEqual(JSON.parse(fs.readlinkSync(`${file}.lock`)).nonce, '0123456789abcdef');
  });

  it('takes over a lock whose pid now belongs to a process started later', async function () {
    if (process.platform !== 'linux') this.skip();
    const stranger = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      writeLock(file, {
        pid: stranger.pid,
        host: os.hostname(),
        since: '2024-01-01T00:00:00.000Z',
        nonce: 'fedcba9876543210',
        started: '1',
      });
      const store = open();
      await store.ready();
      assert.equal(JSON.parse(fs.readlinkSync(`${file}.lock`)).pid, process.pid);
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  it('never takes over a lock held from another host, and says how to clear it', async () => {
    writeLock(file, {
      pid: 4242,
      host: 'other-host.example',
      since: '2024-01-01T00:00:00.000Z',
      nonce: '00112233445566778899',
    });
    const store = open();
    await assert.rejects(store.ready(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /pid 4242 on host other-host\.example/);
      assert.ok(err.message.includes(`delete ${file}.lock`), err.message);
      return true;
    });
  });
});
