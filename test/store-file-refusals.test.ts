/**
 * When the file store refuses, and what it leaves alone: files written by a newer version of the
 * package are never read, moved or overwritten; a store that cannot be written says so before
 * anything is sent, and is known writable again only after a write has succeeded.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deviceKey } from '../src/store/entry';
import { StoreUnavailableError } from '../src/store/errors';
import {
  STORE_FORMAT,
  defaultStorePath,
  openFileStore,
  type FileCredentialStore,
} from '../src/store/file';
import type { StoredEntry } from '../src/store/types';
import { canLimitFileSize } from './support/file-size-limit';

const STORE_MODULE = path.resolve(__dirname, '../src/store/file/index.ts');
const LIMIT_MODULE = path.resolve(__dirname, 'support/file-size-limit.ts');
const PACKAGE_VERSION = (
  JSON.parse(fs.readFileSync(path.resolve(__dirname, '../package.json'), 'utf8')) as {
    version: string;
  }
).version;

function entry(name: string): StoredEntry {
  return {
    host: 'tb.example.com',
    provisionDeviceKey: 'profile-key',
    deviceName: name,
    answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: `t-${name}` },
    provisionedAt: '2024-05-01T12:00:00.000Z',
  };
}

/** Runs `body` (a script's async body, `store` opened on `file`) in a child; its JSON lines. */
function runInChild(file: string, body: string): Promise<Array<Record<string, unknown>>> {
  const script = `
    const { openFileStore } = require(${JSON.stringify(STORE_MODULE)});
    const { limitFileSize } = require(${JSON.stringify(LIMIT_MODULE)});
    const fs = require('fs');
    const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    const store = openFileStore({ filePath: ${JSON.stringify(file)} });
    const outcome = (p) => p.then((value) => ({ value }), (err) =>
      ({ code: err.code, reason: err.reason, message: err.message }));
    (async () => { ${body} })().then(() => store.release(), (err) => say({ crashed: String(err) }));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', () =>
      resolve(
        output
          .split('\n')
          .filter((line) => line.length > 0)
          .map((line) => JSON.parse(line) as Record<string, unknown>),
      ),
    );
  });
}

describe('credential store: file backend, refusals', function () {
  this.timeout(30_000);
  let root: string;
  let file: string;
  const opened: FileCredentialStore[] = [];

  function open(): FileCredentialStore {
    const store = openFileStore({ filePath: file });
    opened.push(store);
    return store;
  }

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-refusals-'));
    file = defaultStorePath(root);
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.release().catch(() => undefined)));
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const [kind, name] of [
    ['snapshot', 'credentials.json'],
    ['journal', 'credentials.json.journal-1'],
  ] as const) {
    it(`refuses a ${kind} in a newer format, naming the version that wrote it, and leaves it whole`, async () => {
      const dir = path.dirname(file);
      fs.mkdirSync(dir, { recursive: true });
      const header = { format: STORE_FORMAT, version: 2, packageVersion: '9.1.0', kind };
      const content =
        kind === 'snapshot'
          ? JSON.stringify({ ...header, sequence: 0, entries: [], futureField: true })
          : `${JSON.stringify({ ...header, sequence: 1 })}\n{"a future entry":1}\n`;
      fs.writeFileSync(path.join(dir, name), content);
      const warnings: string[] = [];
      const store = openFileStore({ filePath: file, onWarning: (m) => warnings.push(m) });
      opened.push(store);
      for (let i = 0; i < 2; i++) {
        await assert.rejects(store.ready(), (err: unknown) => {
          assert.ok(err instanceof StoreUnavailableError);
          assert.equal(err.reason, 'newerVersion');
          assert.match(err.message, /written by node-red-contrib-thingsboard-provision 9\.1\.0/);
          assert.match(err.message, /store format 2/);
          assert.ok(err.message.includes(`this is version ${PACKAGE_VERSION}`), err.message);
          assert.ok(err.message.includes(path.join(dir, name)), err.message);
          return true;
        });
      }
      await assert.rejects(store.put(entry('never')), StoreUnavailableError);
      await store.release();
      assert.equal(warnings.length, 1, 'reported once, not per try');
      assert.deepEqual(fs.readdirSync(dir), [name], 'nothing moved aside, nothing added');
      assert.equal(fs.readFileSync(path.join(dir, name), 'utf8'), content, 'left as it was');
    });
  }

  it('names this package version in every header it writes, and reads headers without it', async () => {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const old = { format: STORE_FORMAT, version: 1, kind: 'journal', sequence: 1 };
    fs.writeFileSync(
      path.join(dir, 'credentials.json.journal-1'),
      `${JSON.stringify(old)}\n${JSON.stringify(entry('old'))}\n`,
    );
    const store = open();
    await store.ready();
    assert.ok(await store.get(deviceKey('tb.example.com', 'profile-key', 'old')));
    await store.put(entry('new'));
    const journal = fs.readFileSync(path.join(dir, 'credentials.json.journal-2'), 'utf8');
    assert.equal(JSON.parse(journal.split('\n')[0]).packageVersion, PACKAGE_VERSION);
    await store.release();
    const snapshot = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.equal(snapshot.packageVersion, PACKAGE_VERSION);
    assert.equal((snapshot.entries as unknown[]).length, 2);
  });

  it('proves it can write at first use with one write, and costs no write per put after', async () => {
    const store = open();
    await store.ready();
    assert.equal(fs.existsSync(path.dirname(file)), false, 'opening alone writes nothing');
    assert.equal(await store.writable(), true, 'a write was made to know');
    assert.equal(store.stats().commits, 1);
    assert.equal(store.stats().journals, 1);
    for (let i = 0; i < 3; i++) assert.equal(await store.writable(), false);
    await store.put(entry('one'));
    assert.equal(await store.writable(), false);
    assert.equal(store.stats().commits, 2, 'the put, and nothing more');
  });

  it('refuses at first use when the store cannot be written at all, and says where', async () => {
    fs.writeFileSync(path.join(root, 'thingsboard-provision'), 'a file where the folder goes');
    const store = open();
    await store.ready();
    await assert.rejects(store.writable(), (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError);
      assert.equal(err.reason, 'notWritable');
      assert.ok(err.message.includes(`The credentials file ${file} cannot be written`));
      return true;
    });
    fs.rmSync(path.join(root, 'thingsboard-provision'));
    assert.equal(await store.writable(), true);
  });

  it('after a failed write (file size limit), refuses until a write succeeds, which writes what failed', async function () {
    if (!canLimitFileSize()) this.skip();
    const dir = path.dirname(file);
    const said = await runInChild(
      file,
      `
      await store.ready();
      say({ first: await store.writable() });
      limitFileSize(process.pid, 1);
      say({ put: await outcome(store.put(${JSON.stringify(entry('lost-once'))})) });
      say({ check: await outcome(store.writable()) });
      say({ again: await outcome(store.writable()) });
      say({ files: fs.readdirSync(${JSON.stringify(dir)}).sort() });
      limitFileSize(process.pid, 'unlimited');
      say({ recovered: await store.writable() });
      say({ stored: (await store.get(${JSON.stringify(deviceKey('tb.example.com', 'profile-key', 'lost-once'))})) !== undefined });
      `,
    );
    const by = (key: string) => said.find((line) => key in line)?.[key] as Record<string, unknown>;
    assert.deepEqual(
      said.find((line) => 'crashed' in line),
      undefined,
    );
    assert.equal(by('first'), true);
    assert.equal(by('put').code, 'EFBIG');
    for (const check of [by('check'), by('again')]) {
      assert.equal(check.reason, 'notWritable');
      assert.match(String(check.message), /cannot be written: EFBIG/);
    }
    // The journal the failed put went to, and the lock: no empty journal per failed try.
    assert.deepEqual(by('files'), ['credentials.json.journal-1', 'credentials.json.lock']);
    assert.equal(by('recovered'), true);
    assert.equal(by('stored'), true);
    const reopened = open();
    await reopened.ready();
    assert.ok(await reopened.get(deviceKey('tb.example.com', 'profile-key', 'lost-once')));
  });
});
