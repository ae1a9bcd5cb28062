import { describe, expect, it } from "vitest";
import { authority, hostPort, joinHostPort, splitHostPort } from "../../core/host-port.js";

describe("hostPort", () => {
  it.each([
    ["https://relay.example.com", "relay.example.com", 443],
    ["https://relay.example.com:443", "relay.example.com", 443], // WHATWG drops the default port; it comes back
    ["http://relay.example.com", "relay.example.com", 80],
    ["http://relay.example.com:8080/path?q", "relay.example.com", 8080],
    ["https://127.0.0.1:4433", "127.0.0.1", 4433],
    ["https://[::1]", "::1", 443],
    ["http://[2001:db8::1]:7000", "2001:db8::1", 7000],
    ["http://user:pw@proxy.corp:3128", "proxy.corp", 3128],
    ["https://RELAY.Example.COM:0443", "relay.example.com", 443],
  ])("%s -> %s %d", (url, host, port) => {
    expect(hostPort(new URL(url))).toEqual({ host, port });
  });
});

describe("joinHostPort", () => {
  it.each([
    ["127.0.0.1", 80, "127.0.0.1:80"],
    ["relay.example.com", 443, "relay.example.com:443"],
    ["::1", 4433, "[::1]:4433"],
    ["::ffff:127.0.0.1", 9090, "[::ffff:127.0.0.1]:9090"], // an IPv4-mapped address is IPv6 to a listener
  ])("%s %d -> %s", (host, port, expected) => {
    expect(joinHostPort(host, port)).toBe(expected);
  });
});

describe("splitHostPort", () => {
  it.each([
    ["127.0.0.1", 80],
    ["relay.example.com", 443],
    ["::1", 4433],
    ["::ffff:127.0.0.1", 9090],
  ])("undoes joinHostPort for %s %d", (host, port) => {
    expect(splitHostPort(joinHostPort(host, port))).toEqual({ host, port });
  });
});

describe("authority", () => {
  it.each([
    ["http://proxy.corp", "proxy.corp:80"],
    ["http://user:pw@proxy.corp:3128/", "proxy.corp:3128"], // no credentials
    ["https://[::1]", "[::1]:443"],
    ["http://[::1]:8080", "[::1]:8080"],
  ])("%s -> %s", (url, expected) => {
    expect(authority(new URL(url))).toBe(expected);
  });
});
