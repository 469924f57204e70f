import assert from 'node:assert/strict';
import { ProvisionError, isTransient } from '../../src/protocol';

/** Runs fn, asserts it throws a ProvisionError with the status and transience, and returns it. */
export function thrown(
  fn: () => unknown,
  status = 'INVALID_INPUT',
  transient = false,
): ProvisionError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ProvisionError, `expected ProvisionError, got ${String(err)}`);
    assert.equal(err.status, status, err.message);
    assert.equal(err.transient, transient, err.message);
    assert.equal(isTransient(err), transient);
    return err;
  }
  assert.fail('expected a ProvisionError to be thrown');
}
