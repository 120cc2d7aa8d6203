// A restricted pickle VM (protocols 0-5), after CPython's Lib/pickle.py `_Unpickler`, that can only
// build plain data and call the few JS functions its caller allow-lists by (module, name).
//
// - GLOBAL / STACK_GLOBAL / INST resolve against the allow-list when the opcode is read: any other
//   global is refused there, before anything is called. EXT1/2/4 (copyreg's extension registry) and
//   out-of-band buffers are refused outright. Nothing is ever evaluated or imported.
// - BUILD never calls __setstate__: it is accepted on dicts and on the caller's own objects, and the
//   state is ignored (for a state dict it only carries attributes such as `_metadata`).
// - Every length is checked against the bytes that remain, text lines and big ints are capped, and
//   the stack and memo have size caps, so memory stays proportional to the pickle's size.
//
// Python values map to: None -> null, bool, int -> number (bigint beyond 2^53), float -> number,
// str -> string, bytes/bytearray -> Uint8Array, list -> array, tuple -> frozen array,
// dict -> Map, set/frozenset -> Set; allow-listed globals -> PyGlobal.
//
// Values may share parts through the memo (a list holding itself, or 2^40 paths to one list from 40
// levels of [l, l]) and nest as deep as the pickle is long: consumers check their shape without
// recursing over it, and describe it in errors with the bounded `describe`.
import { describe } from '../untrusted.js';

/** An allow-listed global. `call` runs for REDUCE / INST / OBJ, `construct` for NEWOBJ(_EX). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call?: (args: readonly unknown[]) => unknown,
    readonly construct?: (args: readonly unknown[]) => unknown,
  ) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

export interface UnpickleOptions {
  /** Names the source in errors (a file, or "file (entry)"). */
  source: string;
  /** The only globals the pickle may name, keyed "module.name". */
  globals: ReadonlyMap<string, PyGlobal>;
  /** Handles PERSID / BINPERSID; without it they are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  maxStack?: number;
  maxMemo?: number;
}

const MAX_LINE = 1 << 20;
const MAX_LONG_BYTES = 1024;

/** Python's type name for a value, for error messages. */
export function pyTypeName(v: unknown): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (v instanceof PyGlobal) return `global ${v}`;
  return (v as object).constructor?.name ?? 'object';
}

export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  return loadPickle(data, options).value;
}

/** The first pickle in `data`, and the offset just past its STOP (where a next pickle would start). */
export function loadPickle(data: Uint8Array, options: UnpickleOptions): { value: unknown; end: number } {
  const { source, globals, persistentLoad } = options;
  const maxStack = options.maxStack ?? 1_000_000;
  const maxMemo = options.maxMemo ?? 1_000_000;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let opPos = 0;
  let op = 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();

  const fail = (problem: string): never => {
    throw new Error(`${source}: refused pickle: ${problem} (opcode 0x${op.toString(16)} at byte ${opPos})`);
  };
  const take = (n: number | bigint): Uint8Array => {
    const remaining = data.length - pos;
    if (n < 0 || n > remaining) fail(`a length of ${n} bytes runs past the end of the pickle (${remaining} bytes remain)`);
    const out = data.subarray(pos, pos + Number(n));
    pos += Number(n);
    return out;
  };
  const u8 = () => take(1)[0];
  const u16 = () => (take(2), dv.getUint16(pos - 2, true));
  const u32 = () => (take(4), dv.getUint32(pos - 4, true));
  const i32 = () => (take(4), dv.getInt32(pos - 4, true));
  const u64 = () => {
    take(8);
    return dv.getBigUint64(pos - 8, true);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('a text argument has no terminating newline');
    if (end - pos > MAX_LINE) fail(`a text argument of ${end - pos} bytes is over the ${MAX_LINE}-byte limit`);
    const s = Buffer.from(data.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const text = (bytes: Uint8Array): string => {
    try {
      return utf8.decode(bytes);
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };

  const push = (v: unknown) => {
    if (stack.length >= maxStack) fail(`stack grows past ${maxStack} items`);
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack.length === marks.at(-1)) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0 || stack.length === marks.at(-1)) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    return stack.splice(m as number);
  };
  const memoPut = (i: number, v: unknown) => {
    if (!memo.has(i) && memo.size >= maxMemo) fail(`memo grows past ${maxMemo} entries`);
    memo.set(i, v);
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored`);
    return memo.get(i);
  };
  const intOf = (v: bigint): number | bigint => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const decodeLong = (bytes: Uint8Array): number | bigint => {
    if (bytes.length > MAX_LONG_BYTES) fail(`an integer of ${bytes.length} bytes is over the ${MAX_LONG_BYTES}-byte limit`);
    if (bytes.length === 0) return 0;
    let v = 0n;
    for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
    if (bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(8 * bytes.length);
    return intOf(v);
  };
  const parseInt10 = (s: string): number | bigint => {
    const t = s.trim().replace(/L$/, '');
    if (!/^[+-]?\d+$/.test(t) || t.length > 2 * MAX_LONG_BYTES) fail(`${describe(s)} is not an integer`);
    return intOf(BigInt(t));
  };
  const key = (k: unknown): unknown => {
    const t = typeof k;
    if (k === null || t === 'string' || t === 'number' || t === 'bigint' || t === 'boolean') return k;
    return fail(`a dict key of type ${pyTypeName(k)} is not supported`);
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (!(d instanceof Map)) fail(`SETITEM(S) on a ${pyTypeName(d)}`);
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (d as Map<unknown, unknown>).set(key(items[i]), items[i + 1]);
  };
  const appendItems = (l: unknown, items: unknown[]) => {
    if (!Array.isArray(l) || Object.isFrozen(l)) fail(`APPEND(S) on a ${pyTypeName(l)}`);
    for (const x of items) (l as unknown[]).push(x);
  };
  const addItems = (s: unknown, items: unknown[]) => {
    if (!(s instanceof Set) || Object.isFrozen(s)) fail(`ADDITEMS on a ${pyTypeName(s)}`);
    for (const x of items) (s as Set<unknown>).add(key(x));
  };
  const tuple = (items: unknown[]) => Object.freeze(items);
  const findGlobal = (module: unknown, name: unknown): PyGlobal => {
    if (typeof module !== 'string' || typeof name !== 'string') fail('a global named by non-strings');
    const g = globals.get(`${module}.${name}`);
    if (!g) fail(`global ${module}.${name} is not allowed (a checkpoint may only use: ${[...globals.keys()].join(', ')})`);
    return g as PyGlobal;
  };
  const callGlobal = (f: unknown, args: unknown): unknown => {
    if (!(f instanceof PyGlobal) || !f.call) fail(`${pyTypeName(f)} cannot be called`);
    if (!Array.isArray(args)) fail(`call arguments must be a tuple, not ${pyTypeName(args)}`);
    return (f as PyGlobal).call!(args as unknown[]);
  };
  const construct = (cls: unknown, args: unknown): unknown => {
    if (!(cls instanceof PyGlobal) || !cls.construct) fail(`${pyTypeName(cls)} cannot be instantiated with NEWOBJ`);
    if (!Array.isArray(args)) fail(`NEWOBJ arguments must be a tuple, not ${pyTypeName(args)}`);
    return (cls as PyGlobal).construct!(args as unknown[]);
  };
  const persistent = (pid: unknown) => {
    if (!persistentLoad) fail('persistent ids are not supported here');
    return persistentLoad!(pid);
  };

  for (;;) {
    opPos = pos;
    if (pos >= data.length) fail('the pickle ends without a STOP opcode (truncated?)');
    op = data[pos++];
    switch (op) {
      // framing and structure
      case 0x80: { // PROTO
        const proto = u8();
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: { // FRAME: only a hint for buffered reads; the length must fit
        const n = u64();
        if (n > BigInt(data.length - pos)) fail(`a frame of ${n} bytes runs past the end of the pickle`);
        break;
      }
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        if (marks.length >= maxStack) fail(`more than ${maxStack} open MARKs`);
        marks.push(stack.length);
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP

      // memo
      case 0x70: memoPut(Number(parseInt10(line())), top()); break; // PUT
      case 0x71: memoPut(u8(), top()); break; // BINPUT
      case 0x72: memoPut(u32(), top()); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size, top()); break; // MEMOIZE
      case 0x67: push(memoGet(Number(parseInt10(line())))); break; // GET
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET

      // scalars
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x4a: push(i32()); break; // BININT
      case 0x8a: push(decodeLong(take(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        push(decodeLong(take(n)));
        break;
      }
      case 0x49: { // INT (protocol 0; "00"/"01" are False/True)
        const s = line();
        push(s === '00' ? false : s === '01' ? true : parseInt10(s));
        break;
      }
      case 0x4c: push(parseInt10(line())); break; // LONG
      case 0x46: { // FLOAT
        const s = line().trim();
        const v = /^[+-]?(inf|infinity)$/i.test(s) ? (s.startsWith('-') ? -Infinity : Infinity) : /^[+-]?nan$/i.test(s) ? NaN : Number(s);
        if (s === '' || (Number.isNaN(v) && !/nan/i.test(s))) fail(`${describe(s)} is not a float`);
        push(v);
        break;
      }
      case 0x47: take(8); push(dv.getFloat64(pos - 8, false)); break; // BINFLOAT (big-endian)

      // strings and bytes (torch.load decodes py2 strings as UTF-8)
      case 0x58: push(text(take(u32()))); break; // BINUNICODE
      case 0x8c: push(text(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(text(take(u64()))); break; // BINUNICODE8
      case 0x56: push(rawUnicodeEscape(line())); break; // UNICODE
      case 0x53: push(text(Buffer.from(pyStringLiteral(line(), fail), 'latin1'))); break; // STRING
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        push(text(take(n)));
        break;
      }
      case 0x55: push(text(take(u8()))); break; // SHORT_BINSTRING
      case 0x42: push(new Uint8Array(take(u32()))); break; // BINBYTES
      case 0x43: push(new Uint8Array(take(u8()))); break; // SHORT_BINBYTES
      case 0x8e: push(new Uint8Array(take(u64()))); break; // BINBYTES8
      case 0x96: push(new Uint8Array(take(u64()))); break; // BYTEARRAY8
      case 0x97: fail('out-of-band buffers (NEXT_BUFFER) are not supported'); break;
      case 0x98: break; // READONLY_BUFFER

      // containers
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x6c: push(popMark()); break; // LIST
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(tuple([a, b, c])); break; } // TUPLE3
      case 0x64: { const d = new Map(); setItems(d, popMark()); push(d); break; } // DICT
      case 0x91: { const s = new Set(); addItems(s, popMark()); push(Object.freeze(s)); break; } // FROZENSET
      case 0x61: { const x = pop(); appendItems(top(), [x]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x90: { const items = popMark(); addItems(top(), items); break; } // ADDITEMS

      // globals and calls: only allow-listed ones
      case 0x63: { const module = line(); push(findGlobal(module, line())); break; } // GLOBAL
      case 0x93: { const name = pop(); push(findGlobal(pop(), name)); break; } // STACK_GLOBAL
      case 0x52: { const args = pop(); push(callGlobal(pop(), args)); break; } // REDUCE
      case 0x69: { // INST
        const cls = findGlobal(line(), line());
        push(callGlobal(cls, popMark()));
        break;
      }
      case 0x6f: { // OBJ
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        push(callGlobal(items[0], items.slice(1)));
        break;
      }
      case 0x81: { const args = pop(); push(construct(pop(), args)); break; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size) fail('keyword arguments to NEWOBJ_EX are not supported');
        push(construct(pop(), args));
        break;
      }
      case 0x62: { // BUILD: state is ignored, never passed to __setstate__
        pop();
        const inst = top();
        if (inst === null || typeof inst !== 'object' || inst instanceof PyGlobal || Array.isArray(inst) || inst instanceof Uint8Array) {
          fail(`BUILD on a ${pyTypeName(inst)}`);
        }
        break;
      }
      case 0x50: push(persistent(line())); break; // PERSID
      case 0x51: push(persistent(pop())); break; // BINPERSID
      case 0x82: case 0x83: case 0x84: // EXT1 / EXT2 / EXT4
        fail('extension registry codes (EXT1/2/4) are not allowed');
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16)}`);
    }
  }
}

/** Python's raw-unicode-escape codec (protocol 0 UNICODE): \uXXXX and \UXXXXXXXX, the rest latin-1. */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string, b: string) => String.fromCodePoint(parseInt(a ?? b, 16)));
}

/** A protocol-0 STRING argument: a quoted Python literal with backslash escapes, as latin-1. */
function pyStringLiteral(s: string, fail: (problem: string) => never): string {
  const q = s[0];
  if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) fail('STRING argument is not quoted');
  const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '0': '\0' };
  return s.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    return simple[e] ?? `\\${e}`;
  });
}
