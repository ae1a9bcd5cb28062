import { formatDuration } from "../../core/duration.js";
import type { Logger } from "../../core/logger.js";

/** How often the remaining time is logged while the window is open. */
const REMINDER_MS = 10 * 60_000;

export interface AccessWindow {
  /** Logs the time left (also done at start, every 10 minutes, and by the connector on each tunnel connect). */
  remind(): void;
  stop(): void;
}

/**
 * The --for window: the outside may come in until `leaveTime`, then `onEnd`
 * runs (the connector drains like on SIGTERM). Timers are chained in steps of
 * at most 10 minutes, which also keeps them under setTimeout's 24.8-day limit.
 */
export function startAccessWindow(leaveTime: Date, log: Logger, onEnd: () => void): AccessWindow {
  let timer: NodeJS.Timeout | undefined;
  const remind = () => {
    const leftMs = Math.max(0, leaveTime.getTime() - Date.now());
    log.info({ leaveTime: leaveTime.toISOString(), remaining: formatDuration(leftMs) }, "access window open");
  };
  const step = () => {
    const leftMs = leaveTime.getTime() - Date.now();
    if (leftMs <= 0) {
      timer = undefined;
      log.info({ leaveTime: leaveTime.toISOString() }, "access window ended; disconnecting");
      onEnd();
      return;
    }
    timer = setTimeout(() => {
      if (leaveTime.getTime() - Date.now() > 0) remind();
      step();
    }, Math.min(leftMs, REMINDER_MS));
  };
  remind();
  step();
  return {
    remind,
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
