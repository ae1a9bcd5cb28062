import type { JsonValue } from "@bufbuild/protobuf";

/** A change seen by a watcher: `value` is undefined for a delete. */
export interface KvChange {
  key: string;
  value: JsonValue | undefined;
}

/**
 * The narrow storage interface the relay depends on. Keys are dotted paths
 * ("tenant.acme", "key.ab12..."); values are proto JSON of the records in
 * proto/ferry/state/v1. A single node keeps them in a file (file-store.ts); a
 * cluster keeps the same keys in the "ferry_state" JetStream KV bucket
 * (services/cluster/jetstream-store.ts).
 */
export interface KvStore {
  get(key: string): JsonValue | undefined;
  /** Entries whose key starts with `prefix`, ordered by key. */
  list(prefix: string): Array<[string, JsonValue]>;
  put(key: string, value: JsonValue): Promise<void>;
  delete(key: string): Promise<void>;
  /** Calls `listener` after every change, local or (in a cluster) remote. */
  watch(listener: (change: KvChange) => void): () => void;
  close(): Promise<void>;
}
