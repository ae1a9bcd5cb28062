/**
 * Calls `fn` for each item; an item whose call throws goes to `onThrow` and
 * the loop goes on with the next, so one bad frame of a batch costs only its
 * own exchange. One try around the loop, not one per item: the hot loop stays
 * as it was while nothing throws.
 */
export function eachContained<T>(items: readonly T[], fn: (item: T) => void, onThrow: (item: T, err: unknown) => void): void {
  let i = 0;
  while (i < items.length) {
    try {
      for (; i < items.length; i++) fn(items[i]!);
    } catch (err) {
      const item = items[i++]!;
      try {
        onThrow(item, err);
      } catch {
        // nothing more can be done for that item
      }
    }
  }
}
