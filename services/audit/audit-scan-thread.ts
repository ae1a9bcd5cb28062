import { parentPort } from "node:worker_threads";
import { type ScanRequest, scanAudit } from "./audit-scan.js";

/** The audit worker thread: answers scan requests one at a time (audit-scan-worker.ts starts it). */
parentPort?.on("message", (msg: { id: number; req: ScanRequest }) => {
  try {
    parentPort!.postMessage({ id: msg.id, result: scanAudit(msg.req) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
