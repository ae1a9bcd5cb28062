/** How a relay node reaches NATS. Without it the relay runs as a single node with its state in the data directory. */
export interface NatsOptions {
  /** Server URLs, e.g. ["nats://h1:4222", "nats://h2:4222"]. */
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  /** PEM files for TLS to NATS: a CA to trust, and a client certificate and key for mutual TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** JetStream replicas for Ferry's buckets and streams (default: 3 when the NATS cluster has 3 or more servers, else 1). */
  replicas?: number;
}
