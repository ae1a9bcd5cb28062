import type { JsonValue } from "@bufbuild/protobuf";
import { FerryError } from "../../core/errors.js";
import type { KvChange, KvStore } from "../state/kv-store.js";
import type { KvMirror } from "./kv-mirror.js";

const encoder = new TextEncoder();
/** How long a write waits out JetStream electing a leader (it answers 503 or not at all meanwhile). */
const TRANSIENT_MS = 10_000;

/** JetStream's answers to a compare-and-set that lost: another node wrote first. */
const isConflict = (err: unknown) => /wrong last sequence|key exists/i.test(String(err));

/** Retries a write that failed because JetStream could not take it yet; a refused compare-and-set is not retried here. */
async function transient<T>(write: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + TRANSIENT_MS;
  for (let delay = 100; ; delay = Math.min(delay * 2, 1_000)) {
    try {
      return await write();
    } catch (err) {
      const text = String(err);
      if (isConflict(err) || Date.now() + delay > deadline) throw err;
      if (!/503|timeout|no responders|not ready|leader/i.test(text)) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
const decoder = new TextDecoder();

/**
 * The cluster's KvStore: the "ferry_state" JetStream KV bucket, read from
 * memory. Every write is a compare-and-set against the revision this node last
 * saw, so two nodes changing one record at once cannot silently lose either
 * change: the loser gets "concurrent_change" and the catalog retries it on
 * fresh data.
 */
export function createJetStreamStore(mirror: KvMirror): KvStore {
  const listeners = new Set<(change: KvChange) => void>();
  const decoded = new Map<string, { revision: number; value: JsonValue }>();
  const read = (key: string): JsonValue | undefined => {
    const e = mirror.get(key);
    if (!e) return undefined;
    const hit = decoded.get(key);
    if (hit && hit.revision === e.revision) return hit.value;
    let value: JsonValue;
    try {
      value = JSON.parse(decoder.decode(e.value)) as JsonValue;
    } catch {
      // Anything with NATS rights can put bytes here. null is no record's JSON: the catalog skips it and counts it.
      value = null;
    }
    decoded.set(key, { revision: e.revision, value });
    return value;
  };
  mirror.onChange((key, entry) => {
    decoded.delete(key);
    const value = entry ? read(key) : undefined;
    for (const l of listeners) l({ key, value });
  });

  /** A refused compare-and-set means another node wrote first: fetch its version so a retry starts from it. */
  const conflict = async (key: string, err: unknown): Promise<FerryError> => {
    if (isConflict(err)) {
      const e = await mirror.kv.get(key).catch(() => null);
      if (e) mirror.applyLocal(key, e.revision, e.operation === "PUT" ? { value: e.value, revision: e.revision, created: e.created } : undefined);
      return new FerryError("failed_precondition", "concurrent_change", `"${key}" was changed on another node at the same time; try again`);
    }
    return new FerryError("unavailable", "state_unavailable", `cannot write "${key}" to the cluster's state: ${String(err)}`, { cause: err });
  };

  return {
    get: read,
    list(prefix) {
      const out: Array<[string, JsonValue]> = [];
      for (const [key] of mirror.entries()) if (key.startsWith(prefix)) out.push([key, read(key)!]);
      return out.sort(([a], [b]) => (a < b ? -1 : 1));
    },
    async put(key, value) {
      const bytes = encoder.encode(JSON.stringify(value));
      const known = mirror.get(key)?.revision;
      let revision: number;
      try {
        revision = await transient(() => (known === undefined ? mirror.kv.create(key, bytes) : mirror.kv.update(key, bytes, known)));
      } catch (err) {
        throw await conflict(key, err);
      }
      mirror.applyLocal(key, revision, { value: bytes, revision, created: new Date() });
    },
    async delete(key) {
      const known = mirror.get(key)?.revision;
      if (known === undefined) return;
      try {
        await transient(() => mirror.kv.delete(key, { previousSeq: known }));
      } catch (err) {
        throw await conflict(key, err);
      }
      // delete() does not say at which revision; the marker does.
      const marker = await mirror.kv.get(key).catch(() => null);
      mirror.applyLocal(key, marker?.revision ?? known + 1, undefined);
    },
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      mirror.close();
    },
  };
}
