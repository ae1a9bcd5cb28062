/** The longest serial RFC 5280 allows: 20 octets. */
const MAX_HEX_DIGITS = 40;

/**
 * A certificate serial number in one canonical form, so the serial an
 * operator copies (`openssl x509 -serial`: "serial=0A1B2C", a browser's
 * "0a:1b:2c", Node's `serialNumber`) compares equal to the one a connector
 * presents: upper-case hex, without separators (":" or spaces) and without
 * leading zeros. Undefined for anything that is not a serial.
 */
export function normalizeCertSerial(text: string): string | undefined {
  const hex = text.trim().replace(/^serial=/i, "").replace(/[:\s]/g, "");
  if (!/^[0-9a-fA-F]+$/.test(hex)) return undefined;
  const canonical = hex.replace(/^0+(?=.)/, "").toUpperCase();
  return canonical.length <= MAX_HEX_DIGITS ? canonical : undefined;
}
