/**
 * NATS subjects of the cluster (see proto/ferry/cluster/v1/cluster.proto).
 * Tenant and target names are DNS labels and node ids are checked at start,
 * so none can contain a dot or a wildcard.
 */
export const routeSubject = (tenant: string, target: string) => `ferry.route.${tenant}.${target}`;
export const ROUTE_QUEUE = "ferry-route";
/**
 * Frames towards the connector ("req", for the node holding the tunnel) and towards the client ("res", for the
 * node where the client is). Two subjects, because one node may be both ends of an exchange (its own tunnel was
 * busy and NATS routed the exchange back to it).
 */
export type FramesKind = "req" | "res";
export const requestFramesSubject = (node: string) => `ferry.frames.${node}.req`;
export const responseFramesSubject = (node: string) => `ferry.frames.${node}.res`;
export const heartbeatSubject = (node: string) => `ferry.heartbeat.${node}`;
export const HEARTBEAT_ALL = "ferry.heartbeat.*";
export const controlSubject = (node: string) => `ferry.control.${node}`;

export const auditSubject = (node: string) => `ferry.audit.${node}`;
export const AUDIT_STREAM = "FERRY_AUDIT";

export const STATE_BUCKET = "ferry_state";
export const NODES_BUCKET = "ferry_nodes";
export const TUNNELS_BUCKET = "ferry_tunnels";

/** Node ids travel in subjects and KV keys. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Live traffic (see FeedInterest in cluster.proto): who watches, and the finished exchanges while anyone does. */
export const FEED_INTEREST_SUBJECT = "ferry.feed.interest";
export const feedSubject = (tenant: string) => `ferry.feed.exchanges.${tenant}`;
export const FEED_ALL = "ferry.feed.exchanges.*";
