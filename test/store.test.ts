/** The store layer's own vocabulary, whatever the backend. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  STORE_BACKENDS,
  SharedStore,
  deviceKey,
  isStoreBackend,
  isStoredEntry,
  openStore,
} from '../src/store';
import type { CredentialStore, StoreWarningListener, StoredEntry } from '../src/store/types';

const ENTRY: StoredEntry = {
  host: 'tb.example.com',
  provisionDeviceKey: 'profile-key',
  deviceName: 'dev-1',
  answer: { status: 'SUCCESS', credentialsType: 'ACCESS_TOKEN', credentialsValue: 'token-0001' },
  provisionedAt: '2024-05-01T12:00:00.000Z',
};

describe('credential store', () => {
  it('keys a device by host (any case, trimmed), profile key and exact device name', () => {
    assert.equal(
      deviceKey(' TB.Example.com ', 'profile-key', 'dev-1'),
      deviceKey('tb.example.com', 'profile-key', 'dev-1'),
    );
    assert.notEqual(
      deviceKey('tb.example.com', 'profile-key', 'Dev-1'),
      deviceKey('tb.example.com', 'profile-key', 'dev-1'),
    );
    // Separators inside the parts cannot make two devices one.
    assert.notEqual(deviceKey('a', 'b","c', 'd'), deviceKey('a', 'b', 'c","d'));
  });

  it('recognises a whole entry and refuses a partial one', () => {
    assert.ok(isStoredEntry(ENTRY));
    assert.ok(!isStoredEntry({ ...ENTRY, answer: { status: 'SUCCESS' } }));
    assert.ok(!isStoredEntry({ ...ENTRY, deviceName: 7 }));
  });

  it('opens the backend it is asked for, and knows only those it has', async () => {
    assert.deepEqual(STORE_BACKENDS, ['file']);
    assert.ok(isStoreBackend('file'));
    assert.ok(!isStoreBackend('redis '));
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-store-open-'));
    try {
      const filePath = path.join(root, 'credentials.json');
      const store = openStore('file', { filePath });
      await store.ready();
      await store.put(ENTRY);
      assert.deepEqual(await store.get(deviceKey('tb.example.com', 'profile-key', 'dev-1')), ENTRY);
      assert.equal(store.describe(), `the credentials file ${filePath}`);
      await store.release();
      assert.ok(fs.existsSync(filePath));
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  describe('shared by the nodes of one config node', () => {
    /** A store that counts its openings and releases and can raise a warning. */
    function counted() {
      const counts = { opened: 0, released: 0 };
      let warn: StoreWarningListener = () => undefined;
      const open = (onWarning: StoreWarningListener): CredentialStore => {
        counts.opened++;
        warn = onWarning;
        return {
          ready: async () => undefined,
          get: async () => undefined,
          writable: async () => false,
          put: async () => undefined,
          flush: async () => undefined,
          release: async () => {
            counts.released++;
          },
          describe: () => 'a counted store',
        };
      };
      return {
        counts,
        open,
        warn: (text: string) => warn(text, { kind: 'writeFailed', file: 'f', error: text }),
      };
    }

    it('opens the store on first use only, and releases it once closed and let go by all', async () => {
      const { counts, open } = counted();
      const shared = new SharedStore(open);
      const first = shared.lease(() => undefined);
      const second = shared.lease(() => undefined);
      assert.equal(counts.opened, 1);
      assert.equal(first.store, second.store);
      let closed = false;
      const closing = shared.close().then(() => (closed = true));
      first.release();
      first.release();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(closed, false, 'closed while a node still held the store');
      assert.equal(counts.released, 0);
      second.release();
      await closing;
      assert.equal(counts.released, 1);
    });

    it('tells every holder of a lease about a warning, and no longer one that let go', () => {
      const { open, warn } = counted();
      const shared = new SharedStore(open);
      const heard: string[][] = [[], []];
      const leases = heard.map((list) => shared.lease((message) => list.push(message)));
      warn('disk full');
      leases[0].release();
      warn('still full');
      assert.deepEqual(heard, [['disk full'], ['disk full', 'still full']]);
    });

    it('closes at once when no node ever used the store, opening nothing', async () => {
      const { counts, open } = counted();
      await new SharedStore(open).close();
      assert.deepEqual(counts, { opened: 0, released: 0 });
    });
  });
});
