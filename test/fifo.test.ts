import assert from 'node:assert/strict';
import { Fifo } from '../src/provisioner/fifo';

describe('fifo queue', () => {
  it('behaves like an array used as a queue through thousands of random operations', () => {
    // A small deterministic generator, so a failure can be replayed.
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const queue = new Fifo<number>();
    const model: number[] = [];
    let next = 0;
    for (let step = 0; step < 60_000; step++) {
      const r = random();
      // Phases of growth and of draining, so the front crosses the compaction threshold often.
      const growing = Math.floor(step / 5_000) % 2 === 0;
      if (r < (growing ? 0.7 : 0.3)) {
        queue.push(next);
        model.push(next++);
      } else if (r < 0.97) {
        assert.equal(queue.shift(), model.shift());
      } else if (r < 0.995) {
        const target = model.length > 0 ? model[Math.floor(random() * model.length)] : -1;
        const index = model.indexOf(target);
        if (index !== -1) model.splice(index, 1);
        assert.equal(queue.remove(target), index !== -1);
      } else {
        assert.deepEqual(queue.takeAll(), model.splice(0));
      }
      assert.equal(queue.length, model.length);
    }
    assert.deepEqual(queue.takeAll(), model);
    assert.equal(queue.shift(), undefined);
    assert.equal(queue.length, 0);
  });

  it('keeps the order of a queue of 200 000 items', () => {
    const queue = new Fifo<number>();
    for (let i = 0; i < 200_000; i++) queue.push(i);
    for (let i = 0; i < 200_000; i++) assert.equal(queue.shift(), i);
    assert.equal(queue.length, 0);
  });
});
