import { type ClientDuplexStream, makeGenericClientConstructor, Metadata, status as grpcStatus } from "@grpc/grpc-js";
import { createRateLimitedLog } from "../../core/rate-limited-log.js";
import { type Frame, type RequestHead, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import {
  type ConnectRequest,
  type ConnectResponse,
  type ConnectorStatus,
  type Hello,
  type Welcome,
} from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { msFromDuration } from "../../core/duration.js";
import { Exchange, ExchangeReset } from "../../core/exchange/exchange.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import type { Logger } from "../../core/logger.js";
import { Outbox } from "../../core/exchange/outbox.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import { createIdleSignal } from "../../core/idle-signal.js";
import { createTunnelControl, type TunnelControl } from "../../core/exchange/tunnel-control.js";
import { decodeConnectRequest, decodeConnectResponse, encodeTunnelMessage, TUNNEL_PATH } from "../../core/exchange/tunnel-codec.js";
import { DEFAULT_WINDOW, EXCHANGE_ID_BYTES, MAX_FRAME_SIZE, MAX_MESSAGE_BYTES, MAX_WINDOW, MIN_FRAME_SIZE } from "../../core/exchange/protocol.js";
import type { ExchangeTap } from "./exchange-audit.js";
import { relayChannel, type RelayNetwork } from "./relay-channel.js";
import { requestHeadProblem } from "./request-head-problem.js";
import type { TargetForwarder } from "./target-forwarder.js";

/** grpc-js client for TunnelService/Connect, on the tunnel's own codec (see tunnel-codec.ts). */
const TunnelClient = makeGenericClientConstructor(
  {
    connect: {
      path: TUNNEL_PATH,
      originalName: "Connect",
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: ConnectRequest) => encodeTunnelMessage(m),
      requestDeserialize: decodeConnectRequest,
      responseSerialize: (m: ConnectResponse) => encodeTunnelMessage(m),
      responseDeserialize: decodeConnectResponse,
    },
  },
  "TunnelService",
);
const WELCOME_TIMEOUT_MS = 10_000;
/**
 * HTTP/2 PING interval of the grpc-js channel (fixed when the channel is made);
 * the application keepalive follows the interval the relay's Welcome names.
 */
const INITIAL_KEEPALIVE_MS = 15_000;
/** The keepalive interval a relay may ask for: a tiny one would be a ping flood, a huge one no keepalive. */
const MIN_KEEPALIVE_MS = 100;
const MAX_KEEPALIVE_MS = 10 * 60_000;

type Call = ClientDuplexStream<ConnectRequest, ConnectResponse>;
type Control = ConnectRequest["message"];

/** Why a connection attempt or a connection ended. */
export class TunnelError extends Error {
  constructor(
    message: string,
    /** The relay refused us for good (key, protocol version): retrying soon will not help. */
    readonly permanent = false,
  ) {
    super(message);
    this.name = "TunnelError";
  }
}

export interface TunnelConnectionOptions {
  relay: URL;
  key: string;
  hello: Hello;
  forwarder: TargetForwarder;
  log: Logger;
  /** Proxy, trust and client certificate; default: direct, Node's trust store. */
  network?: RelayNetwork;
  /** The local admin paused the connector: new exchanges are refused (the relay should not send any). */
  isPaused?(): boolean;
  /** Watches each exchange (the audit log); undefined keeps the hot path bare. */
  observe?(head: RequestHead, exchangeKey: string): ExchangeTap;
}

/**
 * One tunnel stream from the connector to a relay: sends Hello, waits for
 * Welcome, then serves exchanges until the stream ends. It never reconnects;
 * its owner (a TunnelSlot) decides when to dial again.
 */
export class TunnelConnection {
  readonly outbox = new Outbox<Control>();
  welcome: Welcome | undefined;
  /** The relay sent GoAway: it takes no new exchanges here. */
  relayDraining = false;

  private readonly exchanges = new Map<string, Exchange>();
  /** Taps of exchanges in flight, only when the connector observes them. */
  private readonly taps = new Map<string, ExchangeTap>();
  private readonly client: InstanceType<typeof TunnelClient>;
  private call: Call | undefined;
  private draining = false;
  private readonly control: TunnelControl<ConnectResponse["message"]>;
  // Torn down counts as idle: nothing left in flight will ever finish.
  private readonly idleSignal = createIdleSignal(() => this.exchanges.size === 0 || this.torndown);
  private ended: Promise<void> | undefined;
  private torndown = false;
  /** What the relay sent that we cannot use: the first of each kind logged at once, then one line a minute. */
  private readonly warnFault: ReturnType<typeof createRateLimitedLog>;

  /** Called when the relay sends GoAway, so the owner can dial a replacement. */
  onGoAway: (reason: string) => void = () => {};

  constructor(private readonly opts: TunnelConnectionOptions) {
    this.warnFault = createRateLimitedLog(opts.log);
    this.control = createTunnelControl<ConnectResponse["message"]>({
      outbox: this.outbox,
      onOverflow: () => {
        opts.log.warn({ relay: opts.relay.origin }, "relay is not reading its tunnel; dropping it");
        this.abort("relay is not reading its tunnel");
      },
      onFrame: (frame) => this.onFrame(frame),
      onFrameFailed: (frame, err) => {
        this.relayFault("a frame could not be handled", { err: String(err) });
        this.exchanges.get(exchangeKey(frame.exchangeId))?.reset(ResetCode.INTERNAL, "connector failure");
      },
      onGoAway: (reason) => {
        // The relay ends the stream once in-flight exchanges are done; nothing new comes here.
        if (this.relayDraining) return;
        this.relayDraining = true;
        opts.log.info({ relay: opts.relay.origin, reason }, "relay sent GoAway; moving");
        this.onGoAway(reason);
      },
    });
    const channel = relayChannel(opts.relay, opts.network ?? { insecureSkipVerify: false });
    this.client = new TunnelClient(channel.target, channel.credentials, {
      ...channel.options,
      // Each tunnel gets its own TCP connection, so tunnels can land on different relay nodes.
      "grpc.use_local_subchannel_pool": 1,
      "grpc.keepalive_time_ms": INITIAL_KEEPALIVE_MS,
      "grpc.keepalive_timeout_ms": INITIAL_KEEPALIVE_MS,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.enable_retries": 0,
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      // Wide HTTP/2 windows (stream and connection): exchanges have their own flow control.
      "grpc-node.flow_control_window": 16 * 1024 * 1024,
      "grpc.primary_user_agent": `ferry-connector/${opts.hello.connectorVersion}`,
    });
  }

  get inFlight(): number {
    return this.exchanges.size;
  }

  /** Connects and waits for Welcome. Rejects with TunnelError. */
  async open(): Promise<Welcome> {
    const metadata = new Metadata();
    if (this.opts.key) metadata.set("authorization", `Bearer ${this.opts.key}`);
    const call = (this.client as unknown as { connect(m: Metadata): Call }).connect(metadata);
    this.call = call;
    this.ended = new Promise<void>((resolve, reject) => {
      call.on("error", (err: Error & { code?: number; details?: string }) => {
        const permanent =
          err.code === grpcStatus.UNAUTHENTICATED || err.code === grpcStatus.FAILED_PRECONDITION || err.code === grpcStatus.PERMISSION_DENIED;
        reject(new TunnelError(err.details || err.message, permanent));
      });
      call.on("end", () => resolve());
    });
    this.ended.catch(() => {});
    this.ended.finally(() => this.teardown("tunnel stream ended")).catch(() => {});

    let timer: NodeJS.Timeout | undefined;
    const welcome = new Promise<Welcome>((resolve, reject) => {
      timer = setTimeout(() => reject(new TunnelError(`no Welcome within ${WELCOME_TIMEOUT_MS / 1000}s`)), WELCOME_TIMEOUT_MS);
      this.ended!.then(
        () => reject(new TunnelError("the relay closed the tunnel before Welcome")),
        (err) => reject(err),
      );
      call.on("data", (message: ConnectResponse) => {
        if (!this.welcome) {
          if (message.message.case !== "welcome") {
            reject(new TunnelError("the relay's first message was not Welcome"));
            call.cancel();
            return;
          }
          this.welcome = message.message.value;
          resolve(this.welcome);
          return;
        }
        // Nothing the relay sends may throw out of here: grpc-js calls us from its own stream handling.
        try {
          this.control.handle(message.message);
        } catch (err) {
          this.opts.log.error({ relay: this.opts.relay.origin, err }, "failed to handle a message from the relay; dropping the tunnel");
          this.abort("failed to handle a message from the relay");
        }
      });
    });
    void this.pump(call);
    this.outbox.pushControl({ case: "hello", value: this.opts.hello });
    try {
      const w = await welcome;
      const keepaliveMs = msFromDuration(w.keepaliveInterval) || INITIAL_KEEPALIVE_MS;
      this.startKeepalive(Math.min(Math.max(keepaliveMs, MIN_KEEPALIVE_MS), MAX_KEEPALIVE_MS) || INITIAL_KEEPALIVE_MS);
      return w;
    } catch (err) {
      call.cancel();
      this.client.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Tells the relay what the local admin decided (pause, resume). */
  sendStatus(status: ConnectorStatus): void {
    if (this.welcome && !this.torndown) this.outbox.pushControl({ case: "status", value: status });
  }

  /** Resolves when the stream ends normally; rejects with TunnelError when it fails. */
  closed(): Promise<void> {
    return this.ended ?? Promise.resolve();
  }

  /**
   * Stops taking exchanges (GoAway to the relay), waits at most `graceMs` for
   * those in flight, then ends the stream.
   */
  async drain(graceMs: number, reason: string): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.outbox.pushControl({ case: "goAway", value: { $typeName: "ferry.tunnel.v1.GoAway", reason } });
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.outbox.close(); // the stream ends once what is queued has been written
  }

  /** Resolves when no exchange is in flight. */
  idle(): Promise<void> {
    return this.idleSignal.idle();
  }

  /** Drops the connection at once (dead relay, or stopping). */
  abort(reason: string): void {
    if (this.torndown) return;
    this.opts.log.debug({ relay: this.opts.relay.origin, reason }, "dropping tunnel");
    this.call?.cancel();
    this.teardown(reason);
  }

  private onFrame(frame: Frame): void {
    const key = exchangeKey(frame.exchangeId);
    const existing = this.exchanges.get(key);
    if (existing) {
      if (this.taps.size > 0) this.taps.get(key)?.received(frame);
      return existing.receive(frame);
    }
    if (frame.kind.case !== "requestHead") return; // late frame of a finished exchange
    if (frame.exchangeId.length !== EXCHANGE_ID_BYTES) return this.relayFault("a request with a bad exchange id");
    const head = frame.kind.value;
    const problem = requestHeadProblem(head);
    // Its own copy of the id: a view would keep the whole message it came in alive as long as the exchange.
    const id = Uint8Array.from(frame.exchangeId);
    if (problem) {
      this.relayFault("a request the connector cannot use", { problem });
      this.outbox.pushFrame(resetFrame(id, ResetCode.PROTOCOL_ERROR, `protocol error: ${problem}`));
      return;
    }
    const tap = this.opts.observe?.(head, key);
    if (tap) this.taps.set(key, tap);
    const ex = new Exchange({
      id,
      send: tap
        ? (f) => {
            tap.sent(f);
            this.outbox.pushFrame(f);
          }
        : (f) => this.outbox.pushFrame(f),
      sendWindow: Math.min(head.responseWindow || DEFAULT_WINDOW, MAX_WINDOW),
      receiveWindow: this.opts.hello.requestWindow || DEFAULT_WINDOW,
      maxFrameSize: Math.max(Math.min(this.welcome?.maxFrameSize || MAX_FRAME_SIZE, MAX_FRAME_SIZE), MIN_FRAME_SIZE),
      transportReady: () => this.outbox.ready(),
      onClose: (closed) => {
        this.release(key);
        if (tap) {
          this.taps.delete(key);
          tap.closed(closed);
        }
      },
    });
    const paused = this.opts.isPaused?.() ?? false;
    if (this.draining || paused || this.exchanges.size >= this.opts.hello.maxConcurrentExchanges) {
      // Paused: the relay sent this before it heard of the pause.
      const why = this.draining ? "connector is shutting down" : paused ? "connector is paused by its admin" : "connector is at its exchange limit";
      ex.reset(ResetCode.REFUSED, why);
      return;
    }
    this.exchanges.set(key, ex);
    ex.acceptHead(head);
    try {
      this.opts.forwarder.forward(ex, head);
    } catch (err) {
      this.opts.log.error({ err }, "forwarding failed");
      ex.reset(ResetCode.INTERNAL, "connector failure");
    }
  }

  /** The relay sent something we cannot use: logged once, then at most once a minute with the count. */
  private relayFault(reason: string, details: Record<string, unknown> = {}): void {
    this.warnFault(reason, { relay: this.opts.relay.origin, reason, ...details }, "the relay sent something this connector cannot use");
  }

  private release(key: string): void {
    this.exchanges.delete(key);
    this.idleSignal.changed();
  }

  /** Writes outbox items to the stream, waiting for 'drain' when grpc-js buffers. */
  private async pump(call: Call): Promise<void> {
    try {
      for await (const item of this.outbox) {
        const message: Control =
          item.kind === "frames" ? { case: "frames", value: { $typeName: "ferry.tunnel.v1.FrameBatch", frames: item.frames } } : item.message;
        if (!call.write({ $typeName: "ferry.tunnel.v1.ConnectRequest", message })) await waitDrain(call);
      }
      call.end();
    } catch {
      // the stream failed; 'error' reports it
    }
  }

  private startKeepalive(intervalMs: number): void {
    this.control.startKeepalive(intervalMs, (silentMs) => {
      this.opts.log.warn({ relay: this.opts.relay.origin, silentMs, keepaliveMs: intervalMs }, "relay stopped answering; dropping tunnel");
      this.abort(`no message from the relay for ${silentMs}ms (keepalive ${intervalMs}ms)`);
    });
  }

  private teardown(reason: string): void {
    if (this.torndown) return;
    this.torndown = true;
    this.control.keepalive?.stop();
    this.outbox.abort();
    for (const ex of this.exchanges.values()) ex.fail(new ExchangeReset(ResetCode.UNAVAILABLE, reason, false));
    this.exchanges.clear();
    this.idleSignal.changed();
    this.client.close();
  }
}

function waitDrain(call: Call): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("close", done);
      call.off("error", done);
      resolve();
    };
    call.on("drain", done);
    call.on("close", done);
    call.on("error", done);
  });
}
