/** Test helper: a tag-balance check, enough to catch broken SVG without an XML parser dependency. */
import { expect } from 'vitest';

const TAG = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g;

export function expectWellFormedXml(text: string): void {
  const stack: string[] = [];
  for (const m of text.matchAll(TAG)) {
    const [, closing, tag, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop(), `closing </${tag}>`).toBe(tag);
    else stack.push(tag!);
  }
  expect(stack).toEqual([]);
  // Every '<' or '>' left outside a tag the pattern accepted is malformed markup or unescaped text.
  expect(text.replace(TAG, '')).not.toMatch(/[<>]/);
}
