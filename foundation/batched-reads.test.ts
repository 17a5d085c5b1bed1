import { describe, expect, it } from 'vitest';
import { BatchedReads } from './batched-reads';

describe('BatchedReads', () => {
  it('reads keys asked for in one turn of the event loop together, and keys asked for during a read together in the next one', async () => {
    const reads: number[][] = [];
    const batched = new BatchedReads<number, string>(async (keys) => {
      reads.push(keys);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return new Map(keys.filter((key) => key !== 4).map((key) => [key, `value ${key}`]));
    });
    const first = [batched.get(1), batched.get(5)];
    await new Promise((resolve) => setImmediate(resolve));
    expect(reads).toEqual([[1, 5]]);
    const during = [batched.get(2), batched.get(3), batched.get(2), batched.get(4)];
    expect(await Promise.all(first)).toEqual(['value 1', 'value 5']);
    expect(await Promise.all(during)).toEqual(['value 2', 'value 3', 'value 2', undefined]);
    expect(reads).toEqual([[1, 5], [2, 3, 4]]);
  });

  it('rejects every caller of a failed read and reads again for the next caller', async () => {
    let fail = true;
    const batched = new BatchedReads<string, number>(async (keys) => {
      if (fail) throw new Error('database away');
      return new Map(keys.map((key) => [key, key.length]));
    });
    await expect(Promise.all([batched.get('a'), batched.get('bb')])).rejects.toThrow('database away');
    fail = false;
    expect(await batched.get('ccc')).toBe(3);
  });

  it('keeps a batch to its bound', async () => {
    const sizes: number[] = [];
    const batched = new BatchedReads<number, number>(async (keys) => {
      sizes.push(keys.length);
      return new Map(keys.map((key) => [key, key]));
    }, { maxBatch: 2 });
    expect(await Promise.all([1, 2, 3, 4, 5].map((key) => batched.get(key)))).toEqual([1, 2, 3, 4, 5]);
    expect(sizes).toEqual([2, 2, 1]);
  });
});
