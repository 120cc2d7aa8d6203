// Helpers for values read from untrusted files (checkpoints, configs, tokenizer files): a bounded
// description for error messages, and JSON parsing that refuses nesting deeper than any real file
// has. Both exist because the obvious tools recurse: `String(v)` / `JSON.stringify(v)` of a pickle
// value whose lists reuse themselves through the memo take exponential time, and of a value nested a
// million levels deep (which `JSON.parse` builds without complaint) overflow the stack, losing the
// file name the error should carry.

/** At most this many characters of description (plus "..."). */
const DESCRIBE_BUDGET = 120;
/** Containers deeper than this are shown as "[...]". */
const DESCRIBE_DEPTH = 6;

/**
 * A short, bounded description of any value, for error messages: JSON-like for JSON values and
 * arrays / Maps / Sets / typed arrays, the class name for other objects. Runs in time and memory
 * bounded by the budget whatever the value (cycles, shared sub-lists, deep nesting).
 */
export function describe(value: unknown, budget = DESCRIBE_BUDGET): string {
  let out = '';
  let left = budget;
  const emit = (s: string): boolean => {
    if (left <= 0) return false;
    out += s.length > left ? s.slice(0, left) : s;
    left -= s.length;
    return left > 0;
  };
  const walk = (v: unknown, depth: number): boolean => {
    if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number') return emit(String(v));
    if (typeof v === 'bigint') return emit(String(v));
    if (typeof v === 'string') return emit(JSON.stringify(v.length > left ? v.slice(0, left + 1) : v));
    if (typeof v !== 'object' && typeof v !== 'function') return emit(typeof v);
    let items: Iterable<unknown> | null = null;
    let open = '[';
    let close = ']';
    if (Array.isArray(v)) items = v;
    else if (ArrayBuffer.isView(v)) return emit(`<${v.constructor.name} of ${v.byteLength} bytes>`);
    else if (v instanceof Set) [items, open, close] = [v, '{', '}'];
    else if (v instanceof Map) [items, open, close] = [v.entries(), '{', '}'];
    else if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
      [items, open, close] = [Object.entries(v as object), '{', '}'];
    } else return emit(`<${(v as object).constructor?.name ?? 'object'}>`);
    if (depth >= DESCRIBE_DEPTH) return emit(`${open}...${close}`);
    if (!emit(open)) return false;
    let first = true;
    for (const item of items) {
      if (!first && !emit(',')) return false;
      first = false;
      // Map entries and object entries are [key, value] pairs: show them as "key: value"
      if (close === '}' && Array.isArray(item) && item.length === 2 && !(v instanceof Set)) {
        if (!walk(item[0], depth + 1) || !emit(':') || !walk(item[1], depth + 1)) return false;
      } else if (!walk(item, depth + 1)) return false;
    }
    return emit(close);
  };
  return walk(value, 0) ? out : `${out}...`;
}

/**
 * The deepest nesting of `[` / `{` in a JSON text, or Infinity as soon as it passes `limit`
 * (strings skipped). Linear in the text, no recursion.
 */
export function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // skip a string: up to the next quote not escaped by a backslash
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > limit) return Infinity;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * JSON.parse, refusing nesting deeper than `maxDepth` before parsing (what a real file of that kind
 * never has: values nested a million deep parse fine but break every recursive consumer).
 * Throws a plain message; callers prefix the file.
 */
export function parseJsonBounded(text: string, maxDepth: number): unknown {
  if (jsonDepth(text, maxDepth) > maxDepth) throw new Error(`JSON nested deeper than ${maxDepth} levels`);
  return JSON.parse(text);
}
