/** The store layer's own vocabulary, whatever the backend. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { STORE_BACKENDS, deviceKey, isStoreBackend, isStoredEntry, openStore } from '../src/store';
import type { StoredEntry } from '../src/store/types';

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
});
