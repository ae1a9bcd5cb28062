import type { KV, KvEntry, KvOptions, NatsConnection, QueuedIterator } from "nats";
import type { Logger } from "../../core/logger.js";

export interface MirrorEntry {
  value: Uint8Array;
  revision: number;
  created: Date;
}

/**
 * A JetStream KV bucket held in memory and kept current by a watch, so reads
 * never wait on the network (the gateway checks a tenant on every request).
 * After a NATS reconnect the watch starts over from a full snapshot and the
 * difference is applied, so changes made while this node was cut off (deletes
 * included) are not missed.
 */
export interface KvMirror {
  readonly kv: KV;
  get(key: string): MirrorEntry | undefined;
  entries(): Generator<[string, MirrorEntry]>;
  /** Records a write of ours at the revision it got, before the watch brings it back (read-your-writes). */
  applyLocal(key: string, revision: number, entry: MirrorEntry | undefined): void;
  /** Called for every change after the first snapshot; `entry` is undefined for a delete. */
  onChange(listener: (key: string, entry: MirrorEntry | undefined) => void): void;
  resync(): void;
  close(): void;
}

/** Opens (creating when missing) a bucket and loads it. JetStream drops requests sent before it elects a leader: retried. */
export async function openKvMirror(
  nc: NatsConnection,
  bucket: string,
  limits: Partial<KvOptions>,
  log: Logger,
  signal: AbortSignal,
  /** Check this often that the watch has not stalled (0: never). */
  verifyEveryMs = 0,
): Promise<KvMirror> {
  const kv = await retry(`open KV bucket ${bucket}`, log, signal, () => nc.jetstream().views.kv(bucket, { timeout: 2_000, ...limits }));
  // Deleted keys stay as tombstones with their revision, so an older put arriving late cannot revive them.
  const map = new Map<string, MirrorEntry & { deleted: boolean }>();
  const listeners: Array<(key: string, entry: MirrorEntry | undefined) => void> = [];
  let watcher: QueuedIterator<KvEntry> | undefined;
  let closed = false;
  let generation = 0;
  /** Highest revision (stream sequence) applied. */
  let highest = 0;

  const fire = (key: string, entry: MirrorEntry | undefined) => {
    for (const l of listeners) {
      // Records come from anyone with NATS rights: a listener that chokes on one must not end the watch for all.
      try {
        l(key, entry);
      } catch (err) {
        log.warn({ bucket, key: key.slice(0, 200), err: String(err) }, "a KV change could not be applied");
      }
    }
  };
  /** Applies a change if it is newer than what we hold; listeners hear of each change once. */
  const apply = (key: string, revision: number, entry: MirrorEntry | undefined, notify: boolean) => {
    if (revision > highest) highest = revision;
    const known = map.get(key);
    if (known && known.revision >= revision) return;
    map.set(key, entry ? { ...entry, deleted: false } : { value: new Uint8Array(0), revision, created: new Date(), deleted: true });
    if (notify && (entry || (known && !known.deleted))) fire(key, entry);
  };

  const startWatch = async (notify: boolean): Promise<void> => {
    const mine = ++generation;
    watcher?.stop();
    const seen = new Set<string>();
    let initialized = false;
    let markInitialized!: () => void;
    const ready = new Promise<void>((resolve) => (markInitialized = resolve));
    const w = await retry(`watch KV bucket ${bucket}`, log, signal, () =>
      kv.watch({
        initializedFn: () => {
          initialized = true;
          // Whatever vanished while we were away (purged, expired) is gone now.
          for (const [key, known] of [...map]) {
            if (seen.has(key)) continue;
            map.delete(key);
            if (notify && !known.deleted) fire(key, undefined);
          }
          markInitialized();
        },
      }),
    );
    watcher = w;
    void (async () => {
      for await (const e of w) {
        if (mine !== generation) break;
        if (!initialized) seen.add(e.key);
        const entry = e.operation === "PUT" ? { value: e.value, revision: e.revision, created: e.created } : undefined;
        apply(e.key, e.revision, entry, notify || initialized);
      }
    })().catch((err: unknown) => log.warn({ bucket, err: String(err) }, "KV watch ended"));
    await ready;
  };

  await startWatch(false);

  /** Starts the watch over from a full snapshot; changes found on the way reach the listeners. */
  const resync = () => {
    if (closed) return;
    startWatch(true).catch((err: unknown) => log.warn({ bucket, err: String(err) }, "KV resync failed"));
  };

  // The watch runs on a consumer held by one NATS server; if that server dies, nats.js notices only after two
  // missed 5 s heartbeats. Comparing the bucket's last sequence with what we have seen finds a stalled watch
  // within two checks, so a change made elsewhere still arrives within seconds after losing a NATS server.
  let behind = 0;
  const verify = verifyEveryMs
    ? setInterval(() => {
        kv.status()
          .then((st) => {
            const last = st.streamInfo.state.last_seq;
            behind = last > highest ? behind + 1 : 0;
            if (behind >= 2 && !closed) {
              behind = 0;
              log.warn({ bucket, last, seen: highest }, "KV watch fell behind; resynchronising");
              resync();
            }
          })
          .catch(() => {});
      }, verifyEveryMs)
    : undefined;
  verify?.unref();

  return {
    kv,
    get(key) {
      const e = map.get(key);
      return e && !e.deleted ? e : undefined;
    },
    *entries() {
      for (const [key, e] of map) if (!e.deleted) yield [key, e];
    },
    applyLocal(key, revision, entry) {
      // Listeners hear of it now; the same revision coming back through the watch is then ignored.
      apply(key, revision, entry, true);
    },
    onChange: (l) => void listeners.push(l),
    resync,
    close() {
      closed = true;
      clearInterval(verify);
      generation++;
      watcher?.stop();
    },
  };
}

/** Retries a JetStream call with short timeouts until it succeeds or the relay stops. */
export async function retry<T>(what: string, log: Logger, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  let delay = 100;
  let warned = false;
  for (;;) {
    if (signal.aborted) throw new Error(`stopped before it could ${what}`);
    try {
      return await fn();
    } catch (err) {
      if (!warned) {
        log.warn({ err: String(err) }, `cannot ${what} yet; retrying`);
        warned = true;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2_000);
    }
  }
}
