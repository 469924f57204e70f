import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deviceKey } from '../src/store/entry';
import {
  MIN_COMPACTION_BYTES,
  STORE_FORMAT,
  defaultStorePath,
  openFileStore,
  type FileCredentialStore,
} from '../src/store/file';
import type { StoredEntry } from '../src/store/types';

const STORE_MODULE = path.resolve(__dirname, '../src/store/file/index.ts');

/** The durable entry for a device of the default profile, as get() answers it. */
function lookUp(
  store: FileCredentialStore,
  host: string,
  profileKey: string,
  deviceName: string,
): Promise<StoredEntry | undefined> {
  return store.get(deviceKey(host, profileKey, deviceName));
}

function entry(name: string, token = `token-of-${name}`, host = 'tb.example.com'): StoredEntry {
  return {
    host,
    provisionDeviceKey: 'profile-key',
    deviceName: name,
    answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: token },
    provisionedAt: '2024-05-01T12:00:00.000Z',
  };
}

/**
 * Every entry found on disk right now, read as the format describes it: the snapshot, then the
 * newer journals in order, each line an entry, text after a journal's last newline ignored.
 */
function durableEntries(file: string): Map<string, StoredEntry> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const found = new Map<string, StoredEntry>();
  if (!fs.existsSync(dir)) return found;
  const names = fs.readdirSync(dir);
  let sequence = 0;
  if (names.includes(base)) {
    const snapshot = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      sequence: number;
      entries: StoredEntry[];
    };
    sequence = snapshot.sequence;
    for (const e of snapshot.entries) found.set(e.deviceName, e);
  }
  const journals = names
    .filter((n) => n.startsWith(`${base}.journal-`))
    .map((n) => Number(n.slice(`${base}.journal-`.length)))
    .filter((n) => n > sequence)
    .sort((a, b) => a - b);
  for (const n of journals) {
    const text = fs.readFileSync(path.join(dir, `${base}.journal-${n}`), 'utf8');
    const lines = text
      .slice(0, text.lastIndexOf('\n') + 1)
      .split('\n')
      .slice(1, -1);
    for (const line of lines) {
      const e = JSON.parse(line) as StoredEntry;
      found.set(e.deviceName, e);
    }
  }
  return found;
}

function journalText(sequence: number, entries: StoredEntry[], tail = ''): string {
  const header = { format: STORE_FORMAT, version: 1, kind: 'journal', sequence };
  return [header, ...entries].map((line) => `${JSON.stringify(line)}\n`).join('') + tail;
}

describe('credential store: file backend', () => {
  let root: string;
  let file: string;
  const opened: FileCredentialStore[] = [];

  function open(onWarning?: (m: string) => void, at = file): FileCredentialStore {
    const store = openFileStore({ filePath: at, onWarning });
    opened.push(store);
    return store;
  }

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-test-'));
    file = defaultStorePath(root);
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.release().catch(() => undefined)));
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('lives at <userDir>/thingsboard-provision/credentials.json', () => {
    assert.equal(
      defaultStorePath('/home/nr/.node-red'),
      path.join('/home/nr/.node-red', 'thingsboard-provision', 'credentials.json'),
    );
  });

  it('starts empty when no file exists, and creates nothing just by opening', async () => {
    const store = open();
    await store.ready();
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'a'), undefined);
    assert.equal(fs.existsSync(path.dirname(file)), false);
  });

  it('refuses get() before the files are loaded', async () => {
    const store = open();
    await assert.rejects(lookUp(store, 'h', 'k', 'd'), /ready/);
  });

  it('resolves put() only once the entry is in a complete file on disk, mode 0600, folder 0700', async () => {
    const store = open();
    await store.ready();
    await store.put(entry('dev-1'));
    // Checked synchronously at resolve time: no later write may be what made it durable.
    const onDisk = durableEntries(file);
    assert.deepEqual(onDisk.get('dev-1'), entry('dev-1'));
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    // The lock: a symbolic link naming this process, while the store is open.
    assert.ok(fs.lstatSync(`${file}.lock`).isSymbolicLink());
    assert.equal(JSON.parse(fs.readlinkSync(`${file}.lock`)).pid, process.pid);
    for (const name of fs.readdirSync(path.dirname(file))) {
      if (name === 'credentials.json.lock') continue;
      assert.equal(fs.statSync(path.join(path.dirname(file), name)).mode & 0o777, 0o600, name);
      assert.doesNotMatch(name, /\.tmp-/);
    }
  });

  it('keeps entries across a reopen, and the last release leaves one complete file', async () => {
    const first = open();
    await first.ready();
    await Promise.all([first.put(entry('a')), first.put(entry('b'))]);
    await first.put(entry('a', 'replaced'));
    await first.release();
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['credentials.json']);
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.equal(parsed.format, STORE_FORMAT);
    assert.equal(parsed.version, 1);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);

    const second = open();
    await second.ready();
    assert.equal(
      (await lookUp(second, 'tb.example.com', 'profile-key', 'a'))?.answer.credentialsValue,
      'replaced',
    );
    assert.ok(await lookUp(second, 'tb.example.com', 'profile-key', 'b'));
  });

  it('keys entries by host (any case), profile key and device name', async () => {
    const store = open();
    await store.ready();
    await store.put(entry('dev', 't1', 'TB.Example.com'));
    assert.ok(await lookUp(store, 'tb.example.com', 'profile-key', 'dev'));
    assert.equal(await lookUp(store, 'other.example.com', 'profile-key', 'dev'), undefined);
    assert.equal(await lookUp(store, 'tb.example.com', 'other-key', 'dev'), undefined);
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'Dev'), undefined);
  });

  it('gives every opener of one file the same entries; releasing one keeps the other working', async () => {
    const a = open();
    const b = open(undefined, `${path.dirname(file)}/./credentials.json`);
    await Promise.all([a.ready(), b.ready()]);
    await Promise.all([a.put(entry('from-a')), b.put(entry('from-b'))]);
    assert.ok(await lookUp(a, 'tb.example.com', 'profile-key', 'from-b'));
    assert.ok(await lookUp(b, 'tb.example.com', 'profile-key', 'from-a'));
    await a.release();
    await a.release();
    await b.put(entry('after'));
    await b.release();
    const reopened = open();
    await reopened.ready();
    for (const name of ['from-a', 'from-b', 'after']) {
      assert.ok(await lookUp(reopened, 'tb.example.com', 'profile-key', name), name);
    }
    await assert.rejects(a.put(entry('late')), /released/);
  });

  it('batches puts that arrive during a write into one group commit', async () => {
    const store = open();
    await store.ready();
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(entry(`dev-${i}`))));
    const { commits, entries } = store.stats();
    assert.equal(entries, 50);
    assert.ok(commits <= 3, `50 concurrent puts took ${commits} writes`);
    assert.equal(durableEntries(file).size, 50);
  });

  it('appends commits to a journal, folds it into the snapshot once it outweighs it, and loads the result', async () => {
    const store = open();
    await store.ready();
    const count = Math.ceil((3 * MIN_COMPACTION_BYTES) / JSON.stringify(entry('dev-0')).length);
    for (let i = 0; i < count; i++) await store.put(entry(`dev-${i}`));
    // A snapshot rewrite may still be under way beside the commits.
    await store.flush();
    const stats = store.stats();
    assert.equal(stats.commits, count);
    assert.ok(stats.compactions >= 1 && stats.compactions <= 3, `${stats.compactions} compactions`);
    assert.ok(stats.journals <= 1, `${stats.journals} journals`);
    const names = fs.readdirSync(path.dirname(file));
    assert.ok(names.includes('credentials.json.lock'), 'locked while open');
    assert.ok(names.filter((n) => n !== 'credentials.json.lock').length <= 2);
    assert.equal(durableEntries(file).size, count);
    await store.release();
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['credentials.json']);
    const again = open();
    await again.ready();
    assert.equal(again.stats().entries, count);
  });

  it('goes on committing while a snapshot is rewritten, and loses nothing when that rewrite fails', async () => {
    // Every snapshot rewrite is held at its temp file until let go (then made to fail).
    let reachedRewrite!: () => void;
    const rewriteStarted = new Promise<void>((resolve) => (reachedRewrite = resolve));
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    const realOpen = fs.promises.open;
    fs.promises.open = (async (target: fs.PathLike, ...rest: unknown[]) => {
      if (String(target).includes('.tmp-')) {
        reachedRewrite();
        await held;
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      }
      return (realOpen as (...args: unknown[]) => Promise<fs.promises.FileHandle>)(target, ...rest);
    }) as typeof fs.promises.open;
    try {
      const warnings: string[] = [];
      const store = open((m) => warnings.push(m));
      await store.ready();
      const perEntry = JSON.stringify(entry('dev-0')).length;
      let n = 0;
      const putUntil = async (started: Promise<void>): Promise<void> => {
        let reached = false;
        void started.then(() => (reached = true));
        while (!reached) await store.put(entry(`dev-${n++}`));
      };
      await putUntil(rewriteStarted);
      const before = n;
      // The rewrite is held: these must still be acknowledged, each in a journal on disk.
      const during = Math.ceil(MIN_COMPACTION_BYTES / 4 / perEntry);
      for (let i = 0; i < during; i++) await store.put(entry(`dev-${n++}`));
      assert.equal(store.stats().compactions, 0);
      assert.equal(durableEntries(file).size, n);
      assert.ok(store.stats().journals >= 2, 'commits went to a journal of their own');
      letGo();
      await store.flush();
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /Could not rewrite the credentials file .*no space left/);
      assert.equal(durableEntries(file).size, n);
      assert.ok(n > before);
      fs.promises.open = realOpen;
      await store.release();
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['credentials.json']);
      const again = open();
      await again.ready();
      assert.equal(again.stats().entries, n);
      assert.deepEqual(fs.readdirSync(path.dirname(file)).sort(), [
        'credentials.json',
        'credentials.json.lock',
      ]);
    } finally {
      fs.promises.open = realOpen;
    }
  });

  it('ignores and removes journals already folded into the snapshot; later files win', async () => {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const write = (name: string, content: string): void =>
      fs.writeFileSync(path.join(dir, name), content);
    write(
      'credentials.json',
      JSON.stringify({
        format: STORE_FORMAT,
        version: 1,
        kind: 'snapshot',
        sequence: 5,
        entries: [entry('x', 'newer')],
      }),
    );
    write('credentials.json.journal-3', journalText(3, [entry('x', 'older')]));
    write('credentials.json.journal-6', journalText(6, [entry('y', 'y1')]));
    write('credentials.json.journal-7', journalText(7, [entry('y', 'y2')]));
    fs.writeFileSync(path.join(dir, 'credentials.json.tmp-1-1'), '{"torn');
    const warnings: string[] = [];
    const store = open((m) => warnings.push(m));
    await store.ready();
    assert.equal(
      (await lookUp(store, 'tb.example.com', 'profile-key', 'x'))?.answer.credentialsValue,
      'newer',
    );
    assert.equal(
      (await lookUp(store, 'tb.example.com', 'profile-key', 'y'))?.answer.credentialsValue,
      'y2',
    );
    assert.deepEqual(warnings, []);
    assert.deepEqual(fs.readdirSync(dir).sort(), [
      'credentials.json',
      'credentials.json.journal-6',
      'credentials.json.journal-7',
      'credentials.json.lock',
    ]);
    await store.put(entry('z'));
    // An existing journal may end in a torn commit: it is never appended to; a new one starts.
    assert.equal(
      fs.readFileSync(path.join(dir, 'credentials.json.journal-7'), 'utf8'),
      journalText(7, [entry('y', 'y2')]),
    );
    assert.ok(durableEntries(file).has('z'));
    assert.match(fs.readFileSync(path.join(dir, 'credentials.json.journal-8'), 'utf8'), /"z"/);
  });

  it('on Linux, appends to its journal through a descriptor opened for synchronized writes (O_DSYNC)', async function () {
    if (process.platform !== 'linux') this.skip();
    const store = open();
    await store.ready();
    await store.put(entry('a'));
    await store.put(entry('b'));
    const journal = fs.realpathSync(path.join(path.dirname(file), 'credentials.json.journal-1'));
    const descriptors = fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === journal;
      } catch {
        return false; // Closed meanwhile (the listing's own descriptor).
      }
    });
    assert.equal(descriptors.length, 1, 'the journal is held open once');
    const info = fs.readFileSync(`/proc/self/fdinfo/${descriptors[0]}`, 'utf8');
    const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(info)?.[1] ?? '0', 8);
    assert.equal(flags & fs.constants.O_DSYNC, fs.constants.O_DSYNC);
    assert.equal(flags & fs.constants.O_APPEND, fs.constants.O_APPEND);
  });

  it('ignores a commit torn by a crash at the end of a journal, and a journal whose header never completed', async () => {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const torn = JSON.stringify(entry('torn')).slice(0, 40);
    fs.writeFileSync(
      path.join(dir, 'credentials.json.journal-1'),
      journalText(1, [entry('a'), entry('b')], torn),
    );
    fs.writeFileSync(path.join(dir, 'credentials.json.journal-2'), '{"format":"thingsb');
    const warnings: string[] = [];
    const store = open((m) => warnings.push(m));
    await store.ready();
    assert.deepEqual(warnings, []);
    assert.equal(store.stats().entries, 2);
    assert.ok(await lookUp(store, 'tb.example.com', 'profile-key', 'a'));
    assert.ok(await lookUp(store, 'tb.example.com', 'profile-key', 'b'));
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'torn'), undefined);
    await store.put(entry('c'));
    assert.ok(fs.existsSync(path.join(dir, 'credentials.json.journal-3')));
    await store.release();
    assert.deepEqual(fs.readdirSync(dir), ['credentials.json']);
    assert.deepEqual([...durableEntries(file).keys()].sort(), ['a', 'b', 'c']);
  });

  for (const [label, content, problem] of [
    ['not JSON', '{"format": "thingsboard-provision-cred', /not valid JSON/],
    ['a JSON array', '[1,2,3]', /not a credentials file/],
    [
      'an entry of the wrong shape',
      JSON.stringify({
        format: STORE_FORMAT,
        version: 1,
        kind: 'snapshot',
        sequence: 0,
        entries: [{ host: 'h', deviceName: 'd' }],
      }),
      /entry 0 has the wrong shape/,
    ],
  ] as const) {
    it(`moves a damaged file (${label}) aside, reports where, and starts empty`, async () => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
      const warnings: string[] = [];
      const store = open((m) => warnings.push(m));
      await store.ready();
      assert.equal(store.stats().entries, 0);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], problem);
      const aside = fs
        .readdirSync(path.dirname(file))
        .filter((n) => n.startsWith('credentials.json.damaged-'));
      assert.equal(aside.length, 1);
      assert.match(aside[0], /^credentials\.json\.damaged-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$/);
      const asidePath = path.join(path.dirname(file), aside[0]);
      assert.ok(warnings[0].includes(asidePath), warnings[0]);
      assert.equal(fs.readFileSync(asidePath, 'utf8'), content);
      await store.put(entry('fresh'));
      await store.release();
      assert.equal(fs.readFileSync(asidePath, 'utf8'), content, 'never overwritten');
      assert.ok(durableEntries(file).has('fresh'));
    });
  }

  it('moves a damaged journal aside and still loads the others', async () => {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'credentials.json.journal-1'), journalText(1, [entry('a')]));
    const damaged = journalText(2, [entry('b')]).replace('"deviceName"', '"nameOfDevice"');
    fs.writeFileSync(path.join(dir, 'credentials.json.journal-2'), damaged);
    fs.writeFileSync(path.join(dir, 'credentials.json.journal-3'), 'garbage\n');
    const warnings: string[] = [];
    const store = open((m) => warnings.push(m));
    await store.ready();
    assert.ok(await lookUp(store, 'tb.example.com', 'profile-key', 'a'));
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'b'), undefined);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /journal-2 is damaged \(line 2 has the wrong shape\)/);
    assert.match(warnings[1], /journal-3 is damaged \(not valid JSON in line 1\)/);
    const aside = fs.readdirSync(dir).filter((n) => n.includes('.damaged-'));
    assert.equal(aside.length, 2);
    assert.ok(aside.some((n) => fs.readFileSync(path.join(dir, n), 'utf8') === damaged));
  });

  it('rejects put() when the file cannot be written, answers nothing for it, and writes it with the next commit', async () => {
    fs.writeFileSync(path.join(root, 'blocker'), 'a file, not a folder');
    const blocked = path.join(root, 'blocker', 'thingsboard-provision', 'credentials.json');
    const store = open(undefined, blocked);
    await store.ready();
    await assert.rejects(store.put(entry('lost')), { code: 'ENOTDIR' });
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'lost'), undefined);
    fs.rmSync(path.join(root, 'blocker'));
    await store.put(entry('next'));
    const onDisk = durableEntries(blocked);
    assert.ok(onDisk.has('lost') && onDisk.has('next'));
  });

  it('answers get() only with entries whose put() has completed', async () => {
    const store = open();
    await store.ready();
    const writing = store.put(entry('pending'));
    assert.equal(await lookUp(store, 'tb.example.com', 'profile-key', 'pending'), undefined);
    await writing;
    assert.deepEqual(
      await lookUp(store, 'tb.example.com', 'profile-key', 'pending'),
      entry('pending'),
    );
  });

  it('writes an entry whose commit failed when the last handle is released', async () => {
    fs.writeFileSync(path.join(root, 'blocker'), 'a file, not a folder');
    const blocked = path.join(root, 'blocker', 'thingsboard-provision', 'credentials.json');
    const store = open(undefined, blocked);
    await store.ready();
    await assert.rejects(store.put(entry('lost')), { code: 'ENOTDIR' });
    fs.rmSync(path.join(root, 'blocker'));
    await store.release();
    assert.ok(durableEntries(blocked).has('lost'));
  });

  it('rejects entries of the wrong shape without writing anything', async () => {
    const store = open();
    await store.ready();
    const bad = { ...entry('bad'), answer: { status: 'SUCCESS', credentialsType: 'NOPE' } };
    await assert.rejects(store.put(bad as unknown as StoredEntry), TypeError);
    assert.equal(fs.existsSync(path.dirname(file)), false);
  });

  it('loses no acknowledged entry and reports no damage when the process is killed mid-write', async function () {
    this.timeout(30_000);
    for (let round = 0; round < 4; round++) {
      const acknowledged = await runAndKill(file, round * 1_000_000, 30 + round * 50);
      assert.ok(acknowledged.length > 0, 'the child acknowledged some puts');
      const warnings: string[] = [];
      const store = openFileStore({ filePath: file, onWarning: (m) => warnings.push(m) });
      await store.ready();
      for (const n of acknowledged) {
        assert.ok(
          await lookUp(store, 'tb.example.com', 'profile-key', `dev-${n}`),
          `dev-${n} was lost`,
        );
      }
      assert.deepEqual(warnings, []);
      await store.release();
    }
  });
});

/** Runs a child that puts entries as fast as it can, kills it, returns what it acknowledged. */
function runAndKill(file: string, start: number, killAfterMs: number): Promise<number[]> {
  const script = `
    const { openFileStore } = require(${JSON.stringify(STORE_MODULE)});
    const store = openFileStore({ filePath: ${JSON.stringify(file)} });
    let next = ${start};
    const entry = (n) => ({ host: 'tb.example.com', provisionDeviceKey: 'profile-key',
      deviceName: 'dev-' + n, provisionedAt: new Date().toISOString(),
      answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: 't' + n + 'x'.repeat(4000) } });
    async function worker() {
      for (;;) { const n = next++; await store.put(entry(n)); process.stdout.write(n + '\\n'); }
    }
    for (let i = 0; i < 8; i++) worker();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      output += chunk;
      timer ??= setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.on('error', reject);
    child.on('exit', () => {
      if (timer) clearTimeout(timer);
      const lines = output.split('\n');
      lines.pop(); // a partial last line was not fully acknowledged
      resolve(lines.map(Number));
    });
  });
}
