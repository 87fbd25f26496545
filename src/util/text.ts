/**
 * Cutting text without breaking a character: every cut (a title, a tag, a message, a path shortened
 * from the left) keeps whole user-perceived characters (grapheme clusters), so no lone surrogate
 * (shown as U+FFFD) and no combining mark or ZWJ sequence cut from the character it belongs to.
 */

// Intl.Segmenter is in every Node with full ICU (the default build); without it, a character is a
// code point with its combining marks, joined to the next one by a ZWJ.
const FALLBACK = /\P{M}\p{M}*(?:\u200D\P{M}\p{M}*)*|\p{M}+/gsu;

/** The grapheme clusters of `text`, in order. */
export const graphemes: (text: string) => string[] = (() => {
  if (typeof Intl === 'object' && typeof Intl.Segmenter === 'function') {
    const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
    return (text: string) => Array.from(segmenter.segment(text), (part) => part.segment);
  }
  return (text: string) => text.match(FALLBACK) ?? [];
})();

/** The longest prefix of `text` made of whole characters and at most `max` UTF-16 units long. */
export function cutStart(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 0) return '';
  let end = 0;
  for (const part of graphemes(text.slice(0, max + 256))) {
    if (end + part.length > max) break;
    end += part.length;
  }
  return text.slice(0, end);
}

/** The longest suffix of `text` made of whole characters and at most `max` UTF-16 units long. */
export function cutEnd(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 0) return '';
  const parts = graphemes(text.slice(Math.max(0, text.length - max - 256)));
  let start = text.length;
  for (let i = parts.length - 1; i >= 0; i--) {
    const length = parts[i]!.length;
    if (text.length - start + length > max) break;
    start -= length;
  }
  return text.slice(start);
}

/** Longest a message of this plugin gets: a safety net under the bounded lists (`firstOf`). */
export const MAX_MESSAGE_CHARS = 4_000;

/** `text` kept to `max` units, whole characters, with `…` where it was cut. */
export function clip(text: string, max = MAX_MESSAGE_CHARS): string {
  if (text.length <= max) return text;
  return `${cutStart(text, max - 1)}…`;
}
