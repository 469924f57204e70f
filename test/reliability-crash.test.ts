/**
 * Crash safety of the credential store in a real Node-RED: a child process runs two provision
 * nodes (one userDir, one store) over hundreds of devices and is killed with SIGKILL at random
 * moments, then restarted. After every kill each store file parses, nothing was ever moved aside
 * as damaged, and every device whose credentials left a provision node is in the store with the
 * same credentials. A function node wired to the outputs records each emitted device with a
 * synchronous append: that is the flow's own proof of what it was given.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Emulator } from '../src/emulator';
import type { StoredEntry } from '../src/provisioner';
import { deviceKey, openFileStore } from '../src/store';
import { KEY, PROFILE, SECRET, configNode } from './support/flows';
import {
  NodeRedProcess,
  prepareUserDir,
  readLines,
  recordTo,
  waitUntil,
  injectEachOnce,
} from './support/node-red-process';

/** New devices per node and run: every run, killed or not, has fresh provisioning to do. */
const BATCH = 80;
const CONCURRENCY = 4;
const KILLS = 6;
const STORE_FILE = /^credentials\.json(?:\.journal-\d+)?$/;

interface Emitted {
  node: string;
  deviceName: string;
  credentialsValue: unknown;
  cached: boolean;
}

interface Failed {
  node: string;
  deviceName: string;
  status: string;
}

/** The batches of every run so far: earlier ones come from the store, the last is new. */
function names(prefix: string, runs: number): string[] {
  const all: string[] = [];
  for (let run = 0; run < runs; run++) {
    for (let i = 0; i < BATCH; i++) all.push(`${prefix}-${run}-${String(i).padStart(3, '0')}`);
  }
  return all;
}

/** The flow: per node an inject (all names, at start) → split → provision → recorder. */
function crashFlow(
  emulator: Emulator,
  emittedLog: string,
  failedLog: string,
  runs: number,
): unknown[] {
  const chain = (id: string, credentialsType: string) => [
    ...injectEachOnce(id, names(`crash-${id}`, runs), `prov-${id}`),
    {
      id: `prov-${id}`,
      z: 'tab',
      type: 'thingsboard-provision',
      name: `node ${id}`,
      config: 'cfg',
      transport: id === 'a' ? 'http' : 'mqtt',
      deviceName: 'payload',
      deviceNameType: 'msg',
      credentialsType,
      gateway: false,
      timeout: 5,
      retries: 1,
      concurrency: CONCURRENCY,
      persist: true,
      mqttConnect: false,
      wires: [['recordEmitted']],
    },
  ];
  return [
    { id: 'tab', type: 'tab', label: 'crash' },
    // Node-RED without its HTTP server exits once idle; a distant repeat keeps it running.
    {
      id: 'keepAlive',
      z: 'tab',
      type: 'inject',
      props: [],
      repeat: '3600',
      once: false,
      wires: [[]],
    },
    configNode(emulator),
    ...chain('a', 'server'),
    ...chain('b', 'ACCESS_TOKEN'),
    {
      id: 'recordEmitted',
      z: 'tab',
      type: 'function',
      name: 'record emitted',
      func: recordTo(
        emittedLog,
        '{ node: msg.thingsboard.deviceName.slice(6, 7), deviceName: msg.payload.deviceName, ' +
          'credentialsValue: msg.payload.credentialsValue, cached: msg.thingsboard.cached }',
      ),
      outputs: 0,
      noerr: 0,
      initialize: '',
      finalize: '',
      libs: [],
      wires: [],
    },
    {
      id: 'catcher',
      z: 'tab',
      type: 'catch',
      scope: ['prov-a', 'prov-b'],
      uncaught: false,
      wires: [['recordFailed']],
    },
    {
      id: 'recordFailed',
      z: 'tab',
      type: 'function',
      name: 'record failed',
      func: recordTo(
        failedLog,
        '{ node: msg.payload.deviceName.slice(6, 7), deviceName: msg.payload.deviceName, ' +
          'status: msg.payload.status }',
      ),
      outputs: 0,
      noerr: 0,
      initialize: '',
      finalize: '',
      libs: [],
      wires: [],
    },
  ];
}

interface StoreOnDisk {
  entries: Map<string, StoredEntry>;
  files: string[];
  temps: string[];
  damaged: string[];
  /** The lock (and takeover markers), left by a killed process or held by a running one. */
  locks: string[];
}

/**
 * Reads the store as its format describes it (the snapshot, then newer journals in order, one entry
 * per line), written here independently of the store's own loader. The snapshot must parse whole;
 * in a journal only the text after the last newline may be torn (a commit never acknowledged).
 */
function readStoreFromDisk(dir: string): StoreOnDisk {
  const found: StoreOnDisk = {
    entries: new Map(),
    files: [],
    temps: [],
    damaged: [],
    locks: [],
  };
  if (!fs.existsSync(dir)) return found;
  const journals: Array<{ sequence: number; entries: StoredEntry[] }> = [];
  let snapshotSequence = 0;
  for (const name of fs.readdirSync(dir)) {
    const full = path.join(dir, name);
    if (name.includes('.tmp-')) {
      found.temps.push(name);
      continue;
    }
    if (name.startsWith('credentials.json.lock')) {
      assert.ok(fs.lstatSync(full).isSymbolicLink(), `${name} is a symbolic link`);
      found.locks.push(name);
      continue;
    }
    if (name.includes('.damaged-')) {
      found.damaged.push(name);
      continue;
    }
    assert.match(name, STORE_FILE, `an unexpected file in the store folder: ${name}`);
    found.files.push(name);
    assert.equal(fs.statSync(full).mode & 0o777, 0o600, `${name} is readable by its owner only`);
    const text = fs.readFileSync(full, 'utf8');
    const end = text.lastIndexOf('\n');
    const lines =
      name === 'credentials.json' ? [text] : end === -1 ? [] : text.slice(0, end).split('\n');
    const parsed = lines.map((line, i) => {
      try {
        return JSON.parse(line) as { kind: string; sequence: number; entries: StoredEntry[] };
      } catch (err) {
        return assert.fail(`${name} line ${i + 1} does not parse: ${(err as Error).message}`);
      }
    });
    if (name === 'credentials.json') {
      assert.equal(parsed[0].kind, 'snapshot');
      snapshotSequence = parsed[0].sequence;
      for (const entry of parsed[0].entries) found.entries.set(entry.deviceName, entry);
    } else if (lines.length > 0) {
      assert.equal(parsed[0].kind, 'journal', name);
      const entries = parsed.slice(1) as unknown as StoredEntry[];
      journals.push({ sequence: parsed[0].sequence, entries });
    }
  }
  journals.sort((a, b) => a.sequence - b.sequence);
  for (const journal of journals) {
    if (journal.sequence <= snapshotSequence) continue;
    for (const entry of journal.entries) found.entries.set(entry.deviceName, entry);
  }
  return found;
}

function credentialsOf(entry: StoredEntry): unknown {
  return entry.answer.credentialsValue;
}

describe('reliability: crash safety of the store in a real Node-RED (SIGKILL)', function () {
  this.timeout(90_000);
  let emulator: Emulator;
  let userDir: string;
  let child: NodeRedProcess | undefined;

  before(async function () {
    emulator = await Emulator.start({
      mqttPort: 0,
      httpPort: 0,
      coapPort: 0,
      profiles: [PROFILE],
      // Stretches each exchange so the kills land while writes are under way.
      faults: { answerDelayMs: 40 },
      mqttCloseAfterAnswerMs: 1000,
    });
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-provision-crash-'));
  });

  after(async function () {
    child?.kill('SIGKILL');
    await child?.exited;
    await emulator.stop();
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it(`keeps every emitted device through ${KILLS} kills at random moments, two nodes, one store`, async function () {
    const emittedLog = path.join(userDir, 'emitted.jsonl');
    const failedLog = path.join(userDir, 'failed.jsonl');
    const storeDir = path.join(userDir, 'thingsboard-provision');
    prepareUserDir(userDir, { cfg: { provisionDeviceKey: KEY, provisionDeviceSecret: SECRET } });

    let kills = 0;
    let previousTemps: string[] = [];

    const checkStore = (when: string): StoreOnDisk => {
      const store = readStoreFromDisk(storeDir);
      assert.deepEqual(store.damaged, [], `${when}: a store file was found damaged`);
      const emitted = readLines<Emitted>(emittedLog);
      for (const record of emitted) {
        const entry = store.entries.get(record.deviceName);
        assert.ok(entry, `${when}: ${record.deviceName} was emitted but is not in the store`);
        assert.deepEqual(
          credentialsOf(entry),
          record.credentialsValue,
          `${when}: ${record.deviceName}`,
        );
      }
      return store;
    };

    for (let run = 0; run <= KILLS; run++) {
      // A deploy between restarts: the same flow, one more batch of new devices.
      const flow = crashFlow(emulator, emittedLog, failedLog, run + 1);
      fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow));
      const total = 2 * BATCH * (run + 1);
      const emittedBefore = readLines<Emitted>(emittedLog).length;
      const failedBefore = readLines<Failed>(failedLog).length;
      child = new NodeRedProcess(userDir);
      const current = child;
      const doneThisRun = () =>
        readLines<Emitted>(emittedLog).length -
        emittedBefore +
        (readLines<Failed>(failedLog).length - failedBefore);
      // The first output of this run: provisioning (or answering from the store) is under way.
      await waitUntil(
        'the first device leaves a provision node',
        () => doneThisRun() > 0,
        30_000,
        current,
      );
      // Temp files of the previous crash were never acknowledged: the store removed them on load.
      const leftover = fs.existsSync(storeDir) ? fs.readdirSync(storeDir) : [];
      for (const temp of previousTemps)
        assert.ok(!leftover.includes(temp), `${temp} survived a restart`);

      if (run < KILLS) {
        // From the first newly provisioned device on, writes are under way: kill in that stretch.
        const newlyEmitted = () =>
          readLines<Emitted>(emittedLog)
            .slice(emittedBefore)
            .some((record) => !record.cached);
        await waitUntil('a new device is provisioned', newlyEmitted, 30_000, current);
        const afterMs = Math.floor(Math.random() * 700);
        await new Promise((resolve) => setTimeout(resolve, afterMs));
        current.kill('SIGKILL');
        const { signal } = await current.exited;
        assert.equal(signal, 'SIGKILL');
        const store = checkStore(`after kill ${run + 1}`);
        // The next run must take over the lock the killed process left behind.
        assert.deepEqual(
          store.locks,
          ['credentials.json.lock'],
          'the killed process held the lock',
        );
        previousTemps = store.temps;
        kills += 1;
        continue;
      }
      // The last run goes to the end, then stops the way Node-RED is stopped: SIGINT.
      await waitUntil(
        'every device of the last run is answered',
        () => doneThisRun() >= total,
        45_000,
        current,
      );
      current.kill('SIGINT');
      const { code } = await current.exited;
      assert.equal(code, 0, `Node-RED exited with ${code}\n${current.log.slice(-3000)}`);
    }
    child = undefined;

    const store = checkStore('after the last run');
    assert.deepEqual(store.temps, [], 'no temp file after a clean stop');
    assert.deepEqual(store.locks, [], 'a clean stop releases the lock');
    assert.deepEqual(store.files, ['credentials.json'], 'a clean stop folds the journals in');

    // The store's own loader agrees with the format read here.
    const reopened = openFileStore({ filePath: path.join(storeDir, 'credentials.json') });
    await reopened.ready();
    for (const [name, entry] of store.entries) {
      assert.deepEqual(await reopened.get(deviceKey(emulator.host, KEY, name)), entry);
    }
    assert.equal(reopened.stats().entries, store.entries.size);
    await reopened.release();

    // Every stored credential is what the server holds for that device.
    for (const [name, entry] of store.entries) {
      const device = emulator.device(name);
      assert.ok(device, `${name} is stored but the server never created it`);
      assert.equal(device.credentials.credentialsType, 'ACCESS_TOKEN');
      assert.equal(
        credentialsOf(entry),
        device.credentials.credentialsType === 'ACCESS_TOKEN' && device.credentials.token,
      );
    }

    // Devices the server created whose answer died with a killed process: refused afterwards.
    const orphans = [...emulator.devices.keys()].filter((name) => !store.entries.has(name));
    const reportedFailures = readLines<Failed>(failedLog).filter((f) => f.status === 'FAILURE');
    for (const orphan of orphans) {
      assert.ok(
        reportedFailures.some((f) => f.deviceName === orphan),
        `${orphan} was never reported`,
      );
    }
    // Per kill and node: the requests at the server plus answers waiting for the next group
    // commit (a slot is freed when the answer is in, before the store write) — twice concurrency.
    const orphanBound = KILLS * 2 * (2 * CONCURRENCY);
    assert.ok(orphans.length <= orphanBound, `${orphans.length} orphaned devices`);
    assert.equal(store.entries.size + orphans.length, emulator.devices.size);
    // Each device was created once: nothing provisioned twice.
    const successes = emulator.requests.filter((r) => r.outcome === 'SUCCESS').length;
    assert.equal(successes, emulator.devices.size);
    assert.equal(store.entries.size + orphans.length, 2 * BATCH * (KILLS + 1));
    assert.equal(kills, KILLS);
  });
});
