import type { Header, RequestHead } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { Exchange } from "../../core/exchange/exchange.js";
import type { TargetSpec } from "./connector-config.js";

/** One exchange, checked and ready for whichever transport reaches its target. */
export interface TargetRequest {
  target: TargetSpec;
  ex: Exchange;
  head: RequestHead;
  /** Base path + relay path + query. */
  path: string;
  /** End-to-end request headers, Host included when the target's setting asks for one. */
  headers: Header[];
  /** Applied to the response head's headers (the target's CORS policy). */
  decorate(headers: Header[]): Header[];
}
