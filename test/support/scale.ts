/**
 * How big the heavy property and fuzz tests run: TRIPWIRE_TEST_SCALE, a number in (0, 1], multiplies
 * their case counts. Default 0.1 (a quick local `npm test`: 1 000 fuzz writes instead of 10 000);
 * CI (.ci/run) exports TRIPWIRE_TEST_SCALE=1, the full sizes. What a test asserts does not change
 * with the scale, only how many cases it checks.
 */
const raw = process.env.TRIPWIRE_TEST_SCALE;
const value = raw === undefined || raw.trim() === '' ? 0.1 : Number(raw);
if (!(Number.isFinite(value) && value > 0 && value <= 1))
  throw new Error(`TRIPWIRE_TEST_SCALE must be a number in (0, 1], got ${JSON.stringify(raw)}`);

export const TEST_SCALE = value;

/** `full` cases scaled by TRIPWIRE_TEST_SCALE, rounded, and at least `min`. */
export function scaled(full: number, min = 1): number {
  return Math.max(min, Math.round(full * TEST_SCALE));
}
