import { FerryError } from "./errors.js";

/** Tenant and target names are DNS labels, so they also work as host-name labels. */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function isDnsLabel(name: string): boolean {
  return DNS_LABEL.test(name);
}

/** Throws invalid_argument naming the field when `name` is not a DNS label. */
export function checkDnsLabel(field: string, name: string): string {
  if (!isDnsLabel(name)) {
    throw new FerryError(
      "invalid_argument",
      "invalid_name",
      `${field} "${name}" is not a DNS label (lower-case letters, digits and '-', 1-63 characters, no '-' at either end)`,
    );
  }
  return name;
}
