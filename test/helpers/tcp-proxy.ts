import { type AddressInfo, createConnection, createServer, type Server, type Socket } from "node:net";

export interface TcpProxy {
  url: string;
  port: number;
  /** Stops moving bytes on every open connection without closing it: a silently dead path. */
  freeze(): void;
  /** Closes every open connection (new ones are still forwarded): a path that broke. */
  cut(): void;
  /** Connections opened so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** A TCP forwarder on 127.0.0.1:0 in front of `upstreamPort`, for simulating dead network paths. */
export async function startTcpProxy(upstreamPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((client) => {
    connections++;
    const upstream = createConnection({ host: "127.0.0.1", port: upstreamPort });
    const pair: [Socket, Socket] = [client, upstream];
    sockets.add(client).add(upstream);
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    freeze() {
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
      pairs.clear();
    },
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    get connections() {
      return connections;
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
