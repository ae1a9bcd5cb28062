/** A connector key as the relay mints it (services/auth/secrets.ts): "fck_", a 16-character id, "_", 256 bits in base64url. */
const CONNECTOR_KEY = /^(fck_[a-z0-9]{16}_)[A-Za-z0-9_-]{43}$/;

export function isConnectorKey(key: string): boolean {
  return CONNECTOR_KEY.test(key);
}

/** The key as it may be shown: "fck_<id>_***" (the id says which key it is, as `ferry admin keys list` does). */
export function maskedConnectorKey(key: string): string {
  return `${CONNECTOR_KEY.exec(key)?.[1] ?? "fck_"}***`;
}
