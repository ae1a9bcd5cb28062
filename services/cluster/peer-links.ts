import { connect as netConnect, type Socket } from "node:net";
import { type OpenExchange, type OpenResult, PeerLinkVerdict } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import type { Frame } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { splitHostPort } from "../../core/host-port.js";
import type { Logger } from "../../core/logger.js";
import { createMessageReader } from "../http/message-reader.js";
import { readLinkWelcome } from "./cluster-messages.js";
import { encodeFramesGathered } from "../../core/exchange/tunnel-codec.js";
import { createFrameBatch, type FrameBatch } from "./frame-batch.js";
import { encodeLinkHello, encodeLinkOpen, encodeLinkOpenResult } from "./link-codec.js";
import type { ClusterFault } from "./nats-callback.js";
import type { FramesKind } from "./subjects.js";

/** Past this much unsent on one connection the peer is not reading its link (exchange credits bound it well below). */
const LINK_HARD_LIMIT = 64 * 1024 * 1024;
/** Waits between attempts to (re)open a link to a node that still announces one. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 10_000;
/** A peer that takes longer to accept both connections is not taken for up. */
const OPEN_TIMEOUT_MS = 5_000;
/** A welcome is a verdict and a short reason. */
const MAX_WELCOME_BYTES = 2048;

/** Our two connections to another node's --peer-listen (one per FramesKind), carrying our frames to it. */
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
  /** What a heartbeat says of the node: where it takes links (HOST:PORT, "" for nowhere). Opens, keeps or replaces the link. */
  announce(node: string, address: string): void;
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
  address: string;
  up: boolean;
  closed: boolean;
  /** `retry`: open it again later (the node still announces it). */
  close(reason: string, retry?: boolean): void;
}

/**
 * The links this node opens to the other nodes' peer listeners: exchange
 * frames then go node to node over TCP instead of through NATS (two more
 * socket hops, the NATS server's CPU and nats.js' copies), in the tunnel's
 * own encoding and gRPC's message framing but without HTTP/2, which costs
 * about twice a socket's CPU per byte. A link is used only once the peer
 * accepted both connections; an exchange keeps the path it started on, so its
 * frames never overtake each other, and fails with the link.
 */
export function createPeerLinks(deps: PeerLinksDeps): PeerLinks {
  const links = new Map<string, LinkState>();
  const retries = new Map<string, { address: string; timer: NodeJS.Timeout; delay: number }>();
  let closed = false;

  const open = (node: string, address: string, delay: number): void => {
    let up = false;
    // Checked by readBeat.
    const { host, port } = splitHostPort(address);
    const kinds: Partial<Record<FramesKind, { socket: Socket; batch: FrameBatch<Buffer[]>; accepted: boolean }>> = {};
    const link: LinkState = {
      node,
      address,
      get up() {
        return up;
      },
      closed: false,
      push(kind, frame) {
        kinds[kind]!.batch.push(frame);
      },
      open(open) {
        kinds.req!.batch.message([encodeLinkOpen(open)]);
      },
      answer(exchangeId, result) {
        kinds.res!.batch.message([encodeLinkOpenResult(exchangeId, result)]);
      },
      close(reason, retry = true) {
        if (link.closed) return;
        link.closed = true;
        clearTimeout(openTimer);
        if (links.get(node) === link) links.delete(node);
        for (const k of Object.values(kinds)) k.socket.destroy();
        const wasUp = up;
        up = false;
        if (wasUp) {
          deps.log.info({ peer: node, address, reason }, "peer link down");
          deps.onDown(link, reason);
        } else deps.log.debug({ peer: node, address, reason }, "peer link not opened");
        // While the node still announces this address: again soon after a link that worked, later and later after failures.
        if (retry && !closed && !retries.has(node)) scheduleRetry(node, address, wasUp ? RETRY_MIN_MS : Math.min(delay * 2, RETRY_MAX_MS));
      },
    };
    /** What one turn queued for a connection, in one write (the messages' pieces gathered by writev). */
    const write = (kind: FramesKind, messages: Buffer[][]) => {
      if (link.closed) return;
      const { socket } = kinds[kind]!;
      socket.cork();
      for (const pieces of messages) for (const p of pieces) socket.write(p);
      socket.uncork();
      if (socket.writableLength > LINK_HARD_LIMIT) link.close("the peer does not read its link");
    };
    const openTimer = setTimeout(() => link.close("the peer did not accept the link in time"), OPEN_TIMEOUT_MS);
    openTimer.unref();
    for (const kind of ["req", "res"] as const) {
      let socket: Socket;
      try {
        // Small frames (heads, window updates) must leave at once: Nagle plus delayed ACKs costs ~40 ms a round trip.
        socket = netConnect({ host, port, noDelay: true });
      } catch (e) {
        // readBeat checked the address; whatever still makes net refuse it will refuse it again.
        deps.fault("peer link address not dialable", { node, address, err: String(e) });
        link.close("cannot dial the peer's address", false);
        return;
      }
      const state = { socket, accepted: false, batch: createFrameBatch(encodeFramesGathered, (messages) => write(kind, messages)) };
      kinds[kind] = state;
      socket.write(encodeLinkHello(deps.nodeId, deps.token, kind));
      let welcomed = false;
      const wrong = (reason: string) => {
        deps.fault(reason, { node });
        link.close("the peer answered the link wrong");
      };
      const reader = createMessageReader({
        maxBytes: MAX_WELCOME_BYTES,
        onMessage(message) {
          // The peer sends its welcome and nothing after it.
          if (welcomed) return wrong("peer link sent more than its welcome");
          welcomed = true;
          const w = readLinkWelcome(message);
          if (!w.ok) return wrong(w.reason);
          if (w.value.verdict !== PeerLinkVerdict.ACCEPTED) {
            // UNKNOWN_NODE: the peer has not heard our heartbeat yet; we try again shortly.
            if (w.value.verdict !== PeerLinkVerdict.UNKNOWN_NODE) deps.fault("peer link refused", { node, reason: w.value.reason });
            return link.close("the peer refused the link");
          }
          state.accepted = true;
          if (kinds.req?.accepted && kinds.res?.accepted && !link.closed) {
            clearTimeout(openTimer);
            up = true;
            deps.log.info({ peer: node, address }, "peer link up");
          }
        },
        onProblem: () => wrong("peer link welcome not in its framing"),
      });
      socket.on("data", (chunk: Buffer) => reader.push(chunk));
      // A peer that stops sending will not take our frames for long either.
      socket.on("end", () => link.close("the peer closed the link"));
      socket.on("close", () => link.close("the peer closed the link"));
      socket.on("error", () => link.close("the link failed"));
    }
    links.set(node, link);
  };

  const scheduleRetry = (node: string, address: string, delay: number) => {
    const timer = setTimeout(() => {
      retries.delete(node);
      try {
        if (!closed && !links.has(node)) open(node, address, delay);
      } catch (e) {
        // From a timer: a throw here would end the process.
        deps.fault("peer link open threw", { node, err: String(e) });
      }
    }, delay);
    timer.unref();
    retries.set(node, { address, timer, delay });
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
    announce(node, address) {
      if (closed || node === deps.nodeId) return;
      const link = links.get(node);
      const retry = retries.get(node);
      if (address === "") return forget(node);
      if (link?.address === address || retry?.address === address) return;
      // A new address (the node restarted elsewhere): the old link goes, a new one is opened.
      cancelRetry(node);
      link?.close("the peer moved", false);
      open(node, address, RETRY_MIN_MS);
    },
    forget,
    close() {
      closed = true;
      for (const node of [...retries.keys()]) cancelRetry(node);
      for (const link of [...links.values()]) link.close("relay node shut down", false);
    },
  };
}
