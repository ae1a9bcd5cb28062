import type { JsonValue } from "@bufbuild/protobuf";

/** A change seen by a watcher: `value` is undefined for a delete. */
export interface KvChange {
  key: string;
  value: JsonValue | undefined;
}

/**
 * The narrow storage interface the relay depends on. Keys are dotted paths
 * ("tenant.acme", "key.ab12..."); values are proto JSON of the records in
 * proto/ferry/state/v1. The single node keeps them in a file; a cluster will
 * keep them in a JetStream KV bucket with the same keys.
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
