/** What a bootstrap admin token (FERRY_ADMIN_TOKEN) needs at least. */
export const MIN_TOKEN_LENGTH = 24;
export const MIN_TOKEN_BITS = 96;

/**
 * A conservative estimate of the randomness in a secret someone chose, in
 * bits: the lower of two measures, each of which catches what the other
 * misses.
 *
 * - Pattern cost: each character costs log2 of the alphabet its character
 *   classes span (lower, upper, digits, other), except that a repeat of an
 *   earlier run of 3+ characters costs only where it points to, and a run of
 *   3+ equal or consecutive characters ("aaaa", "1234", "dcba") costs one
 *   character.
 * - Character frequencies: the length times the empirical Shannon entropy of
 *   its characters (with the Miller-Madow correction for short samples), so a
 *   string of few distinct characters scores low however they are arranged.
 *
 * No dictionary: words are not recognised, so a long passphrase of common
 * words scores higher than its real strength. Random tokens score at or
 * above their real size: `openssl rand -hex 24` 164..230 bits, `-hex 16`
 * 100..150, `-base64 32` over 200, a minted fat_ token over 300;
 * "aaaaaaaaaaaaaaaa" scores 0.
 */
export function estimateTokenBits(secret: string): number {
  // The first 512 characters are plenty to judge (and keep the quadratic match search cheap).
  const c = Array.from(secret.slice(0, 512), (ch) => ch.codePointAt(0)!);
  const n = c.length;
  if (n === 0) return 0;
  const perChar = Math.log2(alphabetSize(secret));
  let pattern = 0;
  for (let i = 0; i < n; ) {
    const back = longestEarlierMatch(c, i);
    if (back >= 3) {
      pattern += Math.log2(i) + Math.log2(back);
      i += back;
      continue;
    }
    const run = runLength(c, i);
    if (run >= 3) {
      pattern += perChar + Math.log2(run);
      i += run;
      continue;
    }
    pattern += perChar;
    i++;
  }
  const counts = new Map<number, number>();
  for (const x of c) counts.set(x, (counts.get(x) ?? 0) + 1);
  let h = 0;
  for (const k of counts.values()) h -= (k / n) * Math.log2(k / n);
  const shannon = counts.size > 1 ? n * h + (counts.size - 1) / (2 * Math.LN2) : 0;
  return Math.min(pattern, shannon);
}

/** Why a bootstrap token is too weak, or undefined when it is good enough. */
export function weakTokenReason(secret: string): string | undefined {
  const bits = Math.floor(estimateTokenBits(secret));
  if (secret.length >= MIN_TOKEN_LENGTH && bits >= MIN_TOKEN_BITS) return undefined;
  return (
    `is too weak (${secret.length} characters, about ${bits} bits of randomness by an estimate that discounts repeats and sequences; ` +
    `it needs at least ${MIN_TOKEN_LENGTH} characters and ${MIN_TOKEN_BITS} bits): make a random one with \`openssl rand -hex 24\`, ` +
    "or leave it unset and the relay mints one at its first start and prints it once"
  );
}

function alphabetSize(s: string): number {
  let size = 0;
  if (/[a-z]/.test(s)) size += 26;
  if (/[A-Z]/.test(s)) size += 26;
  if (/[0-9]/.test(s)) size += 10;
  if (/[^a-zA-Z0-9]/.test(s)) size += 33;
  return size;
}

/** The longest run starting at i that also starts somewhere before i (overlap allowed, as in LZ77). */
function longestEarlierMatch(c: readonly number[], i: number): number {
  let best = 0;
  for (let j = 0; j < i; j++) {
    let k = 0;
    while (i + k < c.length && c[j + k] === c[i + k]) k++;
    if (k > best) best = k;
  }
  return best;
}

/** Length of the run at i of equal characters, or of characters each one above (or below) the one before. */
function runLength(c: readonly number[], i: number): number {
  if (i + 1 >= c.length) return 1;
  const step = c[i + 1]! - c[i]!;
  if (Math.abs(step) > 1) return 1;
  let run = 2;
  while (i + run < c.length && c[i + run]! - c[i + run - 1]! === step) run++;
  return run;
}
