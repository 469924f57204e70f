/**
 * One store handle shared by the nodes of one config node: opened on first use, released once
 * its owner has closed and the last node has let go. Nodes close beside their config node, and
 * their last answers must still be kept.
 */
import type { CredentialStore, StoreWarning, StoreWarningListener } from './types';

/** A user's hold on the shared store: release it once, after the user is done with it. */
export interface StoreLease {
  readonly store: CredentialStore;
  release(): void;
}

export class SharedStore {
  private store: CredentialStore | undefined;
  private readonly listeners = new Set<StoreWarningListener>();
  private leases = 0;
  private closing: (() => void) | undefined;
  private closed: Promise<void> | undefined;

  /** `open` opens the store with one listener that tells every lease holder. */
  constructor(private readonly open: (onWarning: StoreWarningListener) => CredentialStore) {}

  /** Throws what `open` throws. */
  lease(onWarning: StoreWarningListener): StoreLease {
    this.store ??= this.open((message: string, warning: StoreWarning) => {
      for (const listener of [...this.listeners]) listener(message, warning);
    });
    const { store } = this;
    this.listeners.add(onWarning);
    this.leases++;
    let released = false;
    return {
      store,
      release: () => {
        if (released) return;
        released = true;
        this.listeners.delete(onWarning);
        this.leases--;
        this.releaseWhenIdle();
      },
    };
  }

  /** Resolves once the store is released: after every lease is. Never rejects. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.closing = resolve;
      this.releaseWhenIdle();
    });
    return this.closed;
  }

  private releaseWhenIdle(): void {
    const done = this.closing;
    if (!done || this.leases > 0) return;
    this.closing = undefined;
    const store = this.store;
    this.store = undefined;
    void Promise.resolve(store?.release())
      .catch(() => undefined)
      .then(done);
  }
}
