/** The credential of an `Authorization: Bearer <credential>` header (scheme case-insensitive), or "" when there is none. */
export function bearer(header: string | undefined): string {
  const h = header ?? "";
  return h.toLowerCase().startsWith("bearer ") ? h.slice(7).trim() : "";
}
