import { type DescMessage, fromJson, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { FerryError } from "../../core/errors.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import type { KvStore } from "./kv-store.js";

/**
 * One kind of record in the store: its key prefix, its proto, and what it must
 * be, beyond decoding, to be used. The KV store is shared (a cluster's bucket
 * can be written by anything with NATS rights, a state file by hand), so a
 * record is checked where it enters like any other input.
 */
export interface RecordKind<D extends DescMessage> {
  /** "tenant.", "key.", ...: the record's id follows. */
  prefix: string;
  schema: D;
  /** Why a decoded record is unusable, or undefined. */
  check(record: MessageShape<D>, id: string): string | undefined;
}

/** A cached verdict on a record that is not usable, so a hostile record costs one decode and one fault, not one per request. */
const UNUSABLE = Symbol("unusable");

/** Whether a timestamp is set and already past. */
export function passed(ts: Timestamp | undefined, now = Date.now()): boolean {
  return ts !== undefined && timestampMs(ts) <= now;
}

/**
 * The records of the KvStore, decoded and checked once and served from memory
 * (the hot paths do no I/O), and the one queue every change goes through. The
 * catalog, the access policies and the client keys share one, so a change to
 * one of them never interleaves with another (deleting a tenant while its
 * client key is being minted).
 */
export class StoredRecords {
  /** Decoded records by store key (or UNUSABLE). */
  private readonly decoded = new Map<string, unknown>();

  /** Changes run one at a time: each reads, checks and writes without another change in between. */
  private writing: Promise<unknown> = Promise.resolve();

  /** `faults` counts stored records that cannot be used (source "store"). */
  constructor(
    readonly store: KvStore,
    private readonly faults?: PeerFaults,
  ) {
    // Registered before anyone else's watcher: they find the cache already rid of the changed key.
    store.watch((change) => this.decoded.delete(change.key));
  }

  /**
   * Runs a change after the previous one. In a cluster another node may
   * change the same record meanwhile; the store then refuses the write
   * ("concurrent_change") and the change runs again on the fresh record.
   * Never call it from inside a change: that change would wait for itself.
   */
  serialized<T>(change: () => Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      for (let tries = 1; ; tries++) {
        try {
          return await change();
        } catch (err) {
          if (!(err instanceof FerryError && err.code === "concurrent_change") || tries >= 5) throw err;
        }
      }
    };
    const run = this.writing.then(attempt, attempt);
    this.writing = run.catch(() => {});
    return run;
  }

  /** Writes a record; the cache forgets it now and again once written (a read in between may have cached the old one). */
  async put<D extends DescMessage>(kind: RecordKind<D>, id: string, record: MessageShape<D>): Promise<void> {
    const key = kind.prefix + id;
    this.decoded.delete(key);
    await this.store.put(key, toJson(kind.schema, record));
    this.decoded.delete(key);
  }

  async remove(kind: RecordKind<DescMessage>, id: string): Promise<void> {
    const key = kind.prefix + id;
    this.decoded.delete(key);
    await this.store.delete(key);
    this.decoded.delete(key);
  }

  /**
   * A record decoded and checked once, and cached until its key changes.
   * Treat it as read-only. A record that does not decode or fails its check
   * is as good as absent: skipped, counted, logged (rate-limited by faults).
   * `json` is the stored value when the caller has it (a watch callback).
   * Never throws: this runs on every request and in store watch callbacks.
   */
  read<D extends DescMessage>(kind: RecordKind<D>, id: string, json?: JsonValue): MessageShape<D> | undefined {
    const key = kind.prefix + id;
    const hit = this.decoded.get(key);
    if (hit === UNUSABLE) return undefined;
    if (hit) return hit as MessageShape<D>;
    const value = json ?? this.store.get(key);
    if (value === undefined) return undefined;
    let record: MessageShape<D> | undefined;
    let why: string | undefined;
    try {
      // Unknown fields ignored: a newer node in the cluster may have written the record.
      record = fromJson(kind.schema, value, { ignoreUnknownFields: true });
      why = kind.check(record, id);
    } catch {
      why = "record_undecodable";
    }
    if (why !== undefined || record === undefined) {
      this.decoded.set(key, UNUSABLE);
      this.faults?.fault("store", why ?? "record_undecodable", { key: key.slice(0, 100) });
      return undefined;
    }
    this.decoded.set(key, record);
    return record;
  }

  /** Whether a record is stored under this id, usable or not. */
  has(kind: RecordKind<DescMessage>, id: string): boolean {
    return this.store.get(kind.prefix + id) !== undefined;
  }

  /** The usable records of a kind. */
  readAll<D extends DescMessage>(kind: RecordKind<D>): Array<MessageShape<D>> {
    const out: Array<MessageShape<D>> = [];
    for (const [key, json] of this.store.list(kind.prefix)) {
      const record = this.read(kind, key.slice(kind.prefix.length), json);
      if (record) out.push(record);
    }
    return out;
  }
}
