import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Admin } from "./api.js";

/** Who is signed in, and what the role lets the console offer (the relay decides; this only hides what it would refuse). */
export interface Caller {
  api: Admin;
  tokenId: string;
  role: string;
  nodeId: string;
  /** admin and tenant tokens; a viewer sees no write button at all. */
  canWrite: boolean;
  isAdmin: boolean;
  /** The tenant a tenant:NAME token is bound to. */
  tenant: string | undefined;
}

export function callerOf(api: Admin, tokenId: string, role: string, nodeId: string): Caller {
  const tenant = role.startsWith("tenant:") ? role.slice("tenant:".length) : undefined;
  return { api, tokenId, role, nodeId, canWrite: role !== "viewer", isAdmin: role === "admin", tenant };
}

export const CallerContext = createContext<Caller | undefined>(undefined);

export function useCaller(): Caller {
  const c = useContext(CallerContext);
  if (!c) throw new Error("no caller: render pages inside CallerContext");
  return c;
}
