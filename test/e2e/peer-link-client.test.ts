import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createPeerLinks, type PeerLinks } from "../../services/cluster/peer-links.js";
import { encodeLinkWelcome } from "../../services/cluster/link-codec.js";
import { PeerLinkVerdict } from "../../gen/ferry/cluster/v1/cluster_pb.js";
import { quietLog } from "../helpers/in-process.js";
import { eventually } from "../helpers/wait.js";

// The side of a peer link that dials: what it does with a listener that answers wrong. A real socket server plays
// the peer; what it sends is all a hostile or broken node could.

let server: Server | undefined;
let links: PeerLinks | undefined;

afterEach(async () => {
  links?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A listener that writes `answer` to every connection; how many connections it saw, and whether they all closed. */
async function fakePeer(answer: (socket: Socket) => void): Promise<{ address: string; seen: () => number; open: () => number }> {
  let seen = 0;
  let open = 0;
  server = createServer((socket) => {
    seen++;
    open++;
    socket.on("close", () => open--);
    socket.on("error", () => {});
    // Read (and drop) the hello: a socket that is not read never sees the other end close.
    socket.resume();
    answer(socket);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { address: `127.0.0.1:${port}`, seen: () => seen, open: () => open };
}

function dialer() {
  const faults: string[] = [];
  const downs: string[] = [];
  links = createPeerLinks({
    nodeId: "a",
    token: "t",
    log: quietLog,
    fault: (reason) => faults.push(reason),
    onDown: (_, why) => downs.push(why),
  });
  return { links, faults, downs };
}

describe("peer link dialer", () => {
  it("closes a link whose peer sends more than its welcome, and counts it", async () => {
    const welcome = encodeLinkWelcome(PeerLinkVerdict.ACCEPTED, "");
    const peer = await fakePeer((socket) => socket.write(Buffer.concat([welcome, welcome])));
    const { links, faults } = dialer();
    links.announce("b", peer.address);
    await eventually(() => faults.includes("peer link sent more than its welcome"), "the extra message counted");
    expect(links.get("b")).toBeUndefined();
    // Our two connections are gone (the next attempt is a retry later).
    await eventually(() => peer.open() === 0, "the connections closed");
  });

  it("closes a link whose peer answers in another framing, or refuses, and counts only a refusal that is not 'unknown node'", async () => {
    const peer = await fakePeer((socket) => socket.write("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const { links, faults } = dialer();
    links.announce("b", peer.address);
    await eventually(() => faults.includes("peer link welcome not in its framing"), "the bad framing counted");
    expect(links.get("b")).toBeUndefined();
    links.close();

    const unknown = await fakePeer((socket) => socket.end(encodeLinkWelcome(PeerLinkVerdict.UNKNOWN_NODE, "no heartbeat of that node yet")));
    const second = dialer();
    second.links.announce("b", unknown.address);
    await eventually(() => unknown.seen() >= 2 && unknown.open() === 0, "both connections answered and closed");
    expect(second.faults).toEqual([]);
    expect(second.links.get("b")).toBeUndefined();
  });

  it("takes a link for up only when both connections are welcomed, and reports it down when the peer ends it", async () => {
    const welcome = encodeLinkWelcome(PeerLinkVerdict.ACCEPTED, "");
    const sockets: Socket[] = [];
    const peer = await fakePeer((socket) => {
      sockets.push(socket);
      socket.write(welcome);
    });
    const { links, downs, faults } = dialer();
    links.announce("b", peer.address);
    await eventually(() => links.get("b") !== undefined, "the link is up");
    expect(peer.seen()).toBe(2);
    sockets[0]!.end();
    await eventually(() => downs.length === 1, "the link is down");
    expect(links.get("b")).toBeUndefined();
    expect(faults).toEqual([]);
  });
});
