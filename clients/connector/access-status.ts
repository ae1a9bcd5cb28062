import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ConnectorStatus, ConnectorStatusSchema } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";

/**
 * What the connector's local admin decided about access from outside: paused
 * or not (SIGUSR1/SIGUSR2, the control endpoint), and when the connector leaves
 * by itself (--for). The relay is told on every change (ConnectorStatus), so it
 * stops routing to a paused connector instead of sending exchanges to refuse.
 */
export interface AccessStatus {
  readonly paused: boolean;
  readonly leaveTime: Date | undefined;
  /** Returns false when it was paused already. */
  pause(): boolean;
  /** Returns false when it was not paused. */
  resume(): boolean;
  /** Runs after every change. */
  onChange(listener: () => void): void;
  /** As the tunnel protocol carries it (Hello.status, ConnectRequest.status). */
  toProto(): ConnectorStatus;
}

export function createAccessStatus(leaveTime: Date | undefined): AccessStatus {
  let paused = false;
  const listeners: Array<() => void> = [];
  const set = (value: boolean) => {
    if (paused === value) return false;
    paused = value;
    for (const l of listeners) l();
    return true;
  };
  return {
    get paused() {
      return paused;
    },
    leaveTime,
    pause: () => set(true),
    resume: () => set(false),
    onChange: (listener) => void listeners.push(listener),
    toProto: () => create(ConnectorStatusSchema, { paused, ...(leaveTime ? { leaveTime: timestampFromDate(leaveTime) } : {}) }),
  };
}
