/**
 * Application-level keepalive of one tunnel end, the same on both sides.
 * Every message from the peer counts as a sign of life; a Ping goes out each
 * interval; silence for 1.5x the interval means the peer (or the path) is
 * dead. Checked four times per interval, so death is noticed within 1.75x.
 */
export interface KeepaliveOptions {
  intervalMs: number;
  sendPing(nonce: bigint): void;
  /** Called once, when the peer has been silent too long. */
  onDead(silentMs: number): void;
}

export class Keepalive {
  /** Round-trip time of the last answered Ping. */
  lastRttMs: number | undefined;
  private lastSeen = Date.now();
  private lastPingAt = 0;
  private lastPongAt = 0;
  private nonce = 0n;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: KeepaliveOptions) {
    this.timer = setInterval(() => this.tick(), Math.max(10, opts.intervalMs / 4));
    this.timer.unref();
  }

  /** A message arrived from the peer. */
  seen(): void {
    this.lastSeen = Date.now();
  }

  /**
   * The peer pinged: whether to answer. A peer pings once per interval; at
   * most two answers per interval keep a flood of pings from queueing pongs.
   */
  shouldAnswer(): boolean {
    const now = Date.now();
    if (now - this.lastPongAt < this.opts.intervalMs / 2) return false;
    this.lastPongAt = now;
    return true;
  }

  /** The peer answered one of our pings. */
  answered(nonce: bigint): void {
    if (nonce === this.nonce) this.lastRttMs = Date.now() - this.lastPingAt;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = Date.now();
    const silentMs = now - this.lastSeen;
    if (silentMs > this.opts.intervalMs * 1.5) {
      this.stop();
      this.opts.onDead(silentMs);
      return;
    }
    if (now - this.lastPingAt >= this.opts.intervalMs) {
      this.lastPingAt = now;
      this.opts.sendPing(++this.nonce);
    }
  }
}
