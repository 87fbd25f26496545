/** Lists in messages are bounded: the first few items, then how many more, never a flood. */

/** How many items a message lists before "and K more". */
export const LIST_LIMIT = 10;

/** `a, b, c and 7 more`: the first `limit` items joined, then the count of the rest. */
export function firstOf(items: readonly string[], limit = LIST_LIMIT, separator = ', '): string {
  if (items.length <= limit) return items.join(separator);
  return `${items.slice(0, limit).join(separator)}${separator.trim() === '' ? separator : ' '}and ${items.length - limit} more`;
}

/** The first `limit` items, and a last one saying how many more there are (for one-per-line lists). */
export function firstLines(items: readonly string[], limit = LIST_LIMIT, more = (count: number) => `… and ${count} more`): string[] {
  return items.length <= limit ? [...items] : [...items.slice(0, limit), more(items.length - limit)];
}
