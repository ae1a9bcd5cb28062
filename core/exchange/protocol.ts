// Numbers both ends of a tunnel agree on. Changing one that the peer relies on
// means bumping PROTOCOL_VERSION.

/** Version of the exchange protocol spoken on tunnels (Hello/Welcome). */
export const PROTOCOL_VERSION = 1;
/** Oldest protocol version this build still accepts. */
export const MIN_PROTOCOL_VERSION = 1;

/** Largest Data chunk, well under NATS' 1 MiB max_payload so frames cross the bus unchanged. */
export const MAX_FRAME_SIZE = 64 * 1024;
/** Smallest largest-Data-chunk a peer may announce: below it, framing overhead would be most of the traffic. */
export const MIN_FRAME_SIZE = 1024;
/**
 * Default per-exchange receive window. Memory per exchange is bounded by it;
 * throughput per exchange is at most window / round-trip time.
 */
export const DEFAULT_WINDOW = 512 * 1024;
/** Receivers accept windows in this range from peers; anything else is a protocol error. */
export const MIN_WINDOW = MAX_FRAME_SIZE;
export const MAX_WINDOW = 16 * 1024 * 1024;
/** Largest tunnel message either side accepts (a FrameBatch of several Data frames). */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
/** A batch is cut once it holds this many body bytes, to keep messages and latency small. */
export const MAX_BATCH_BYTES = 1024 * 1024;

/**
 * A tunnel's send queue above this many bytes is congested: body writers wait
 * until it drains below the low-water mark, and new exchanges go elsewhere.
 */
export const OUTBOX_HIGH_WATER = 8 * 1024 * 1024;
export const OUTBOX_LOW_WATER = 4 * 1024 * 1024;
/** Past this, the peer is not reading its tunnel (or floods it with pings): drop the tunnel. */
export const OUTBOX_HARD_LIMIT = 32 * 1024 * 1024;

/** Exchange ids are 128 random bits minted by the ingress node. */
export const EXCHANGE_ID_BYTES = 16;
