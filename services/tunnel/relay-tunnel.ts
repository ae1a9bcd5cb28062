import { type Frame, ResetCode } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { ConnectRequest, ConnectResponse } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { exchangeKey } from "../../core/exchange/ids.js";
import type { Logger } from "../../core/logger.js";
import type { Keepalive } from "../../core/exchange/keepalive.js";
import { Outbox } from "../../core/exchange/outbox.js";
import { resetFrame } from "../../core/exchange/reset-frame.js";
import { createIdleSignal } from "../../core/idle-signal.js";
import { createTunnelControl, type OtherMessage, type TunnelControl } from "../../core/exchange/tunnel-control.js";
import { ExchangeLifetime } from "../../core/exchange/exchange-lifetime.js";
import type { PeerFaults } from "../limits/peer-faults.js";
import { checkStatus, type ValidStatus } from "./connector-status.js";

/** What the connector is told when the relay ends a tunnel for a reason it must act on. */
export type TunnelCloseStatus = "unauthenticated" | "permission_denied" | "unavailable";

/** What the relay knows about the connector on the other end of a tunnel. */
export interface TunnelInfo {
  id: string;
  /** Relay node holding the tunnel. */
  nodeId: string;
  tenant: string;
  keyId: string;
  /** The credential the tunnel limits count by: "key:<keyId>", or "cert:<name>" for a certificate alone. */
  principal: string;
  connectorId: string;
  connectorVersion: string;
  hostname: string;
  tunnelIndex: number;
  remoteAddress: string;
  connectTime: Date;
  targets: ReadonlySet<string>;
  /** Most exchanges the connector takes at once on this tunnel. */
  capacity: number;
  /** Receive window the connector grants for each request body. */
  requestWindow: number;
  /** The client certificate that authenticated the tunnel stops being valid then. */
  certificateExpires?: Date;
  /** Serial (normalised hex) of that certificate: the tenant's deny list can end the tunnel. */
  certificateSerial?: string;
  /** A diagnostic probe (ferry doctor): registered so revocation ends it, never routed to. */
  probe?: boolean;
}

/** An exchange passing through: where its response frames go, and when it is over. */
interface Slot {
  deliver(frame: Frame): void;
  lifetime: ExchangeLifetime;
  onDone: (() => void) | undefined;
}

export interface RelayTunnelOptions {
  log: Logger;
  /** Counts what the connector sends that the relay ignores. */
  faults: PeerFaults;
  keepaliveMs: number;
  /** Called once when the tunnel is gone, with the reason. */
  onClose(tunnel: RelayTunnel, reason: string): void;
  /** Called once when the tunnel starts draining (it takes no new exchanges). */
  onDraining?(tunnel: RelayTunnel): void;
  /** Called when the connector's admin paused or resumed it. */
  onStatus?(tunnel: RelayTunnel): void;
}

type Control = ConnectResponse["message"];
type FromConnector = ConnectRequest["message"];

/**
 * The relay's end of one tunnel stream. It is a dumb pipe for exchanges: it
 * forwards frames between whoever opened an exchange (this node's gateway
 * through the local bus, or another node through the cluster bus) and the
 * connector, and tracks only each exchange's lifetime so it knows its load and
 * can fail what it carries when it dies.
 */
export class RelayTunnel {
  readonly outbox = new Outbox<Control>();
  draining = false;
  closed = false;
  closeReason = "";
  closeStatus: TunnelCloseStatus | undefined;
  /** The connector's local admin paused it: route no new exchanges here. */
  paused = false;
  /** When the connector leaves by itself (--for). */
  leaveTime: Date | undefined;

  private readonly slots = new Map<string, Slot>();
  readonly keepalive: Keepalive;
  private readonly control: TunnelControl<FromConnector>;
  private readonly idleSignal = createIdleSignal(() => this.slots.size === 0 || this.closed);

  constructor(
    readonly info: TunnelInfo,
    private readonly opts: RelayTunnelOptions,
  ) {
    this.control = createTunnelControl<FromConnector>({
      outbox: this.outbox,
      onOverflow: () => this.close("connector is not reading its tunnel"),
      onFrame: (frame) => this.fromConnector(frame),
      onFrameFailed: (frame, err) => this.frameFailed(frame, err),
      onGoAway: (reason) => {
        opts.log.info({ tunnel: info.id, reason }, "connector is draining this tunnel");
        // It ends the stream itself once its exchanges are done; route nothing new here meanwhile.
        this.startDraining();
      },
      onOther: (m) => this.connectorOnly(m),
    });
    this.keepalive = this.control.startKeepalive(opts.keepaliveMs, (silentMs) => {
      opts.log.warn({ tunnel: info.id, silentMs }, "connector stopped answering; closing tunnel");
      this.close("keepalive timeout");
    });
  }

  get inFlight(): number {
    return this.slots.size;
  }

  /**
   * Starts an exchange on this tunnel. Frames the connector sends for it go to
   * `deliver`; the returned function sends frames to the connector. `onDone`
   * runs once when the exchange is over, however it ended.
   */
  attach(exchangeId: Uint8Array, deliver: (frame: Frame) => void, onDone?: () => void): (frame: Frame) => void {
    const key = exchangeKey(exchangeId);
    const slot: Slot = { deliver, lifetime: new ExchangeLifetime(), onDone };
    this.slots.set(key, slot);
    return (frame) => {
      if (this.slots.get(key) !== slot) {
        // The exchange is over or the tunnel is gone; only a Reset may still matter to nobody.
        return;
      }
      if (slot.lifetime.request(frame)) this.release(key, slot);
      this.outbox.pushFrame(frame);
    };
  }

  /** Handles one message from the connector. */
  handle(message: ConnectRequest): void {
    this.control.handle(message.message);
  }

  /** What only a connector sends: its status, and (never twice) Hello. */
  private connectorOnly(m: OtherMessage<FromConnector>): void {
    switch (m.case) {
      case "status": {
        const status = checkStatus(m.value);
        if ("invalid" in status) {
          // Ignored, not fatal: the previous status stands, and a connector that lies about it hurts only itself.
          this.opts.faults.fault("connector", "invalid_status", { tunnel: this.info.id, why: status.invalid });
          return;
        }
        this.applyStatus(status);
        this.opts.log.info({ tunnel: this.info.id, paused: this.paused }, this.paused ? "connector paused by its admin" : "connector resumed");
        this.opts.onStatus?.(this);
        return;
      }
      case "hello":
        this.opts.log.warn({ tunnel: this.info.id }, "ignoring a second Hello");
        return;
      default:
        return;
    }
  }

  /** Takes what the connector's admin decided (from Hello, then from each status message), once checked. */
  applyStatus(status: ValidStatus): void {
    this.paused = status.paused;
    this.leaveTime = status.leaveTime;
  }

  /** Asks the connector to move: it reconnects elsewhere and finishes what is in flight here. */
  goAway(reason: string): void {
    if (this.closed || this.draining) return;
    this.startDraining();
    this.outbox.pushControl({ case: "goAway", value: { $typeName: "ferry.tunnel.v1.GoAway", reason } });
  }

  private startDraining(): void {
    if (this.draining) return;
    this.draining = true;
    this.opts.onDraining?.(this);
  }

  /** Resolves once no exchange is in flight (or the tunnel is closed). */
  idle(): Promise<void> {
    return this.idleSignal.idle();
  }

  /**
   * Ends the tunnel. Exchanges still on it fail with UNAVAILABLE towards
   * whoever opened them. `graceful` lets queued frames go out first; `status`
   * tells the connector something it must act on.
   */
  close(reason: string, how: { graceful?: boolean; status?: TunnelCloseStatus } = {}): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.closeStatus = how.status;
    this.keepalive.stop();
    for (const [key, slot] of this.slots) {
      this.slots.delete(key);
      slot.onDone?.();
      slot.deliver(resetFrame(Buffer.from(key, "hex"), ResetCode.UNAVAILABLE, `connector tunnel closed: ${reason}`));
    }
    if (how.graceful) this.outbox.close();
    else this.outbox.abort();
    this.idleSignal.changed();
    this.opts.onClose(this, reason);
  }

  private fromConnector(frame: Frame): void {
    const key = exchangeKey(frame.exchangeId);
    const slot = this.slots.get(key);
    if (!slot) return; // late frame of a finished exchange
    if (slot.lifetime.response(frame)) this.release(key, slot);
    slot.deliver(frame);
  }

  /** A frame from the connector that its exchange's handler could not take: that exchange ends, both ways. */
  private frameFailed(frame: Frame, err: unknown): void {
    const key = exchangeKey(frame.exchangeId);
    this.opts.faults.fault("connector", "frame_handler_threw", { tunnel: this.info.id, err: String(err) });
    const slot = this.slots.get(key);
    if (!slot) return;
    this.release(key, slot);
    const reason = "the relay could not handle a frame of this exchange";
    this.outbox.pushFrame(resetFrame(frame.exchangeId, ResetCode.INTERNAL, reason));
    slot.deliver(resetFrame(frame.exchangeId, ResetCode.INTERNAL, reason));
  }

  private release(key: string, slot: Slot): void {
    this.slots.delete(key);
    slot.onDone?.();
    this.idleSignal.changed();
  }
}
