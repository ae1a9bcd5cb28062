import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants as h2 } from "node:http2";
import { connect as netConnect } from "node:net";
import type { OpenExchange, OpenResult } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Logger } from "../../core/logger.js";
import { GrpcStatus } from "../http/grpc-status.js";
import { createFrameBatch, type FrameBatch } from "./frame-batch.js";
import { encodeLinkOpen, encodeLinkOpenResult } from "./link-codec.js";
import type { ClusterFault } from "./nats-callback.js";

/** Which end of the receiving node frames are for (the NATS subjects' req and res, subjects.ts). */
export type FramesKind = "req" | "res";
export const PEER_LINK_PATH = "/ferry.cluster.v1.PeerLinkService/Frames";

/** Past this much unsent on one stream the peer is not reading its link (exchange credits bound it well below). */
const LINK_HARD_LIMIT = 64 * 1024 * 1024;
/** Waits between attempts to (re)open a link to a node that still announces one. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 10_000;
/** A peer that takes longer to accept both streams is not taken for up. */
const OPEN_TIMEOUT_MS = 5_000;

/** An HTTP/2 connection of ours to another node's --peer-listen, carrying our frames to it. */
export interface PeerLink {
  readonly node: string;
  /** Queues a frame for the node's end `kind`, sent in order within this link. */
  push(kind: FramesKind, frame: Frame): void;
  /** Asks the node to take an exchange (answered over its link to us, if it has one). */
  open(open: OpenExchange): void;
  /** Answers an open the node sent us over its link. */
  answer(exchangeId: Uint8Array, result: OpenResult["result"]): void;
}

export interface PeerLinks {
  /** The node's link while it is up; undefined: send over NATS. */
  get(node: string): PeerLink | undefined;
  /** What a heartbeat says of the node: where it takes links ("" for nowhere). Opens, keeps or replaces the link. */
  announce(node: string, url: string): void;
  /** The node is gone (silent, or forgotten): closes its link. */
  forget(node: string): void;
  close(): void;
}

export interface PeerLinksDeps {
  nodeId: string;
  /** The token this node presents (its digest is in our heartbeat). */
  token: string;
  log: Logger;
  fault: ClusterFault;
  /** A link that was up broke: the exchanges whose frames it carried must fail (some frames may be lost). */
  onDown(link: PeerLink, reason: string): void;
}

interface LinkState extends PeerLink {
  url: string;
  session: ClientHttp2Session;
  up: boolean;
  closed: boolean;
  /** `retry`: open it again later (the node still announces it). */
  close(reason: string, retry?: boolean): void;
}

/**
 * The links this node opens to the other nodes' peer listeners: exchange
 * frames then go node to node over HTTP/2 instead of through NATS (two more
 * socket hops, the NATS server's CPU and nats.js' copies). A link is used only
 * once the peer accepted both streams; an exchange keeps the path it started
 * on, so its frames never overtake each other, and fails with the link.
 */
export function createPeerLinks(deps: PeerLinksDeps): PeerLinks {
  const links = new Map<string, LinkState>();
  const retries = new Map<string, { url: string; timer: NodeJS.Timeout; delay: number }>();
  let closed = false;

  const open = (node: string, url: string, delay: number): void => {
    let up = false;
    const { hostname, port } = new URL(url);
    // Small frames (heads, window updates) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
    const socket = netConnect({ host: hostname.replace(/^\[|\]$/g, ""), port: Number(port), noDelay: true });
    const session = connect(url, { settings: { enablePush: false }, createConnection: () => socket });
    const headers = {
      [h2.HTTP2_HEADER_METHOD]: "POST",
      [h2.HTTP2_HEADER_PATH]: PEER_LINK_PATH,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${deps.token}`,
      "ferry-node": deps.nodeId,
    };
    const streams: Partial<Record<FramesKind, { stream: ClientHttp2Stream; batch: FrameBatch; accepted: boolean }>> = {};
    const link: LinkState = {
      node,
      url,
      session,
      get up() {
        return up;
      },
      closed: false,
      push(kind, frame) {
        streams[kind]!.batch.push(frame);
      },
      open(open) {
        write("req", encodeLinkOpen(open));
      },
      answer(exchangeId, result) {
        write("res", encodeLinkOpenResult(exchangeId, result));
      },
      close(reason, retry = true) {
        if (link.closed) return;
        link.closed = true;
        clearTimeout(openTimer);
        if (links.get(node) === link) links.delete(node);
        // Not from inside the event that brought us here: Node 20 spins forever (RstStream -> SendPendingData)
        // when a session is destroyed from one of its own streams' close or error handlers during its teardown.
        setImmediate(() => session.destroy());
        const wasUp = up;
        up = false;
        if (wasUp) {
          deps.log.info({ peer: node, url, reason }, "peer link down");
          deps.onDown(link, reason);
        } else deps.log.debug({ peer: node, url, reason }, "peer link not opened");
        // While the node still announces this address: again soon after a link that worked, later and later after failures.
        if (retry && !closed && !retries.has(node)) scheduleRetry(node, url, wasUp ? RETRY_MIN_MS : Math.min(delay * 2, RETRY_MAX_MS));
      },
    };
    /** A message that is not a batch, at once (the batches of other exchanges go on around it). */
    const write = (kind: FramesKind, framed: Buffer) => {
      if (!link.closed) streams[kind]!.stream.write(framed);
    };
    const openTimer = setTimeout(() => link.close("the peer did not accept the link in time"), OPEN_TIMEOUT_MS);
    openTimer.unref();
    for (const kind of ["req", "res"] as const) {
      const stream = session.request({ ...headers, "ferry-frames": kind }, { endStream: false });
      const state = {
        stream,
        accepted: false,
        batch: createFrameBatch((message) => {
          if (link.closed) return;
          stream.write(message);
          if (stream.writableLength > LINK_HARD_LIMIT) link.close("the peer does not read its link");
        }, true),
      };
      streams[kind] = state;
      stream.on("response", (h) => {
        if (Number(h[h2.HTTP2_HEADER_STATUS]) !== 200 || h["grpc-status"] !== undefined) {
          // UNAVAILABLE: the peer has not heard our heartbeat yet; we try again shortly.
          if (h["grpc-status"] !== String(GrpcStatus.UNAVAILABLE)) deps.fault("peer link refused", { node, grpcStatus: String(h["grpc-status"] ?? h[h2.HTTP2_HEADER_STATUS]) });
          return link.close("the peer refused the link");
        }
        state.accepted = true;
        if (streams.req?.accepted && streams.res?.accepted && !link.closed) {
          clearTimeout(openTimer);
          up = true;
          deps.log.info({ peer: node, url }, "peer link up");
        }
      });
      // The peer sends nothing but a status at the end: read it anyway, so nothing buffers.
      stream.resume();
      stream.on("close", () => link.close("the peer closed the link"));
      stream.on("error", () => link.close("the link failed"));
    }
    session.on("error", () => link.close("the link failed"));
    session.on("close", () => link.close("the link closed"));
    links.set(node, link);
  };

  const scheduleRetry = (node: string, url: string, delay: number) => {
    const timer = setTimeout(() => {
      retries.delete(node);
      if (!closed && !links.has(node)) open(node, url, delay);
    }, delay);
    timer.unref();
    retries.set(node, { url, timer, delay });
  };

  const cancelRetry = (node: string) => {
    const r = retries.get(node);
    if (r) clearTimeout(r.timer);
    retries.delete(node);
  };

  const forget = (node: string) => {
    cancelRetry(node);
    links.get(node)?.close("the peer is gone", false);
  };

  return {
    get(node) {
      const link = links.get(node);
      return link?.up ? link : undefined;
    },
    announce(node, url) {
      if (closed || node === deps.nodeId) return;
      const link = links.get(node);
      const retry = retries.get(node);
      if (url === "") return forget(node);
      if (link?.url === url || retry?.url === url) return;
      // A new address (the node restarted elsewhere): the old link goes, a new one is opened.
      cancelRetry(node);
      link?.close("the peer moved", false);
      open(node, url, RETRY_MIN_MS);
    },
    forget,
    close() {
      closed = true;
      for (const node of [...retries.keys()]) cancelRetry(node);
      for (const link of [...links.values()]) link.close("relay node shut down", false);
    },
  };
}
