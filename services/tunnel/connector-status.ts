import { timestampInRange } from "../../core/timestamp-range.js";
import type { ConnectorStatus } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";

/** What the connector's local admin decided, once it is known to be sane. */
export interface ValidStatus {
  paused: boolean;
  leaveTime: Date | undefined;
}

/**
 * How far a connector's leave time may lie from the relay's clock. A
 * connector leaves by itself after `--for DURATION`, so a leave time is
 * "soon": up to a year ahead covers any window an admin would open. A little
 * in the past is a connector about to go, or clocks that disagree; more than
 * that is a lie or a broken clock, and either way nothing to show.
 */
export const LEAVE_TIME_MAX_AHEAD_MS = 366 * 86_400_000;
export const LEAVE_TIME_MAX_BEHIND_MS = 10 * 60_000;

/**
 * A connector's status (from Hello or a status message), checked: a leave
 * time must be a real instant (nanos 0..999,999,999) within the window above.
 * Returns a reason (a fixed string, for the peer and the fault counter)
 * instead when it is not. Never throws: the timestamp is peer input, and a
 * Date it cannot hold would throw later wherever it is written.
 */
export function checkStatus(status: ConnectorStatus | undefined, now = Date.now()): ValidStatus | { invalid: string } {
  if (!status) return { paused: false, leaveTime: undefined };
  if (!status.leaveTime) return { paused: status.paused, leaveTime: undefined };
  const ms = timestampInRange(status.leaveTime, now - LEAVE_TIME_MAX_BEHIND_MS, now + LEAVE_TIME_MAX_AHEAD_MS);
  if (ms === undefined) return { invalid: "leave_time is not a time within the next year" };
  return { paused: status.paused, leaveTime: new Date(ms) };
}
