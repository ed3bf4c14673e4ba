/**
 * The schemas every input uses for what ends up as a Firestore document id,
 * a MongoDB ObjectId or a key of a stored map, and the depth/size bound on
 * free-form input.
 *
 * Firestore refuses some ids and field names inside the transaction (the
 * client then saw `internal`); checking the same rules here turns them into
 * `invalid-argument` with the field named, before anything is written.
 */
import type { ObjectId } from "mongodb";
import * as z from "zod";

/** Firestore's limit on a document id, in UTF-8 bytes. */
export const MAX_DOCUMENT_ID_BYTES = 1500;
/** Deepest nesting accepted in any input (Firestore stores at most 20 levels of maps/arrays). */
export const MAX_INPUT_DEPTH = 16;
/** Deepest raw request body looked at (input plus the callable's `data` wrapper, with room to spare). */
export const MAX_BODY_DEPTH = 32;
/** Longest key accepted in a stored map. */
export const MAX_MAP_KEY_LENGTH = 128;
/** Largest free-form map accepted, as UTF-8 JSON (documents are at most 1 MiB; inputs stay far below). */
export const MAX_MAP_BYTES = 64 * 1024;

/** Names Firestore reserves for itself, as ids and as field names. */
const RESERVED = /^__.*__$/s;
/** A lone UTF-16 surrogate cannot be encoded as UTF-8. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Keys that reach an object's prototype when copied; refused in any input. */
export const PROTOTYPE_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

/** Why `id` cannot be a Firestore document id, or undefined when it can. */
export function documentIdProblem(id: string): string | undefined {
  if (id.length === 0) return "must not be empty";
  if (LONE_SURROGATE.test(id)) return "must be valid UTF-8";
  if (Buffer.byteLength(id, "utf8") > MAX_DOCUMENT_ID_BYTES) return `must be at most ${MAX_DOCUMENT_ID_BYTES} bytes`;
  if (id.includes("/")) return "must not contain '/'";
  if (id === "." || id === "..") return "must not be '.' or '..'";
  if (RESERVED.test(id)) return "must not match __.*__ (reserved)";
  return undefined;
}

/** Why `key` cannot be a key of a stored map, or undefined when it can. */
export function mapKeyProblem(key: string): string | undefined {
  if (key.length === 0) return "keys must not be empty";
  if (key.length > MAX_MAP_KEY_LENGTH) return `keys must be at most ${MAX_MAP_KEY_LENGTH} characters`;
  if (LONE_SURROGATE.test(key)) return "keys must be valid UTF-8";
  if (RESERVED.test(key) || PROTOTYPE_KEYS.has(key)) return "reserved key";
  return undefined;
}

export interface DocumentIdOptions {
  /** A tighter length bound, in characters. */
  max?: number;
  /** A narrower alphabet, with the message shown when it does not match. */
  pattern?: { regex: RegExp; message: string };
}

/** A MongoDB ObjectId as clients see it: 24 lowercase hex characters. */
export const objectIdHex = z.string().regex(/^[0-9a-f]{24}$/, "a 24-character hex id");

/** The ObjectId for a hex id checked by `objectIdHex` (the driver is loaded on first use, not at import). */
export function objectId(hex: string): ObjectId {
  const { ObjectId: Id } = require("mongodb") as typeof import("mongodb");
  return new Id(hex);
}

/** A string Firestore accepts as a document id (optionally narrower). */
export function documentId(options: DocumentIdOptions = {}) {
  const base = options.max === undefined ? z.string() : z.string().max(options.max);
  return base.superRefine((id, ctx) => {
    const problem =
      documentIdProblem(id) ??
      (options.pattern && !options.pattern.regex.test(id) ? options.pattern.message : undefined);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
}

/** A key Firestore (and we) accept in a stored map. */
export const mapKey = z.string().superRefine((key, ctx) => {
  const problem = mapKeyProblem(key);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** The first way `value` breaks the depth, key or value rules, with where; walked without recursion. */
export function jsonProblem(
  value: unknown,
  maxDepth = MAX_INPUT_DEPTH,
): { path: (string | number)[]; message: string } | undefined {
  const stack: Array<{ value: unknown; path: (string | number)[] }> = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: current, path } = stack.pop()!;
    if (current === null || typeof current === "string" || typeof current === "boolean") continue;
    if (typeof current === "number") {
      if (!Number.isFinite(current)) return { path, message: "numbers must be finite" };
      continue;
    }
    if (typeof current !== "object") return { path, message: `a ${typeof current} is not JSON` };
    if (path.length >= maxDepth) return { path, message: `nested deeper than ${maxDepth} levels` };
    if (Array.isArray(current)) {
      current.forEach((item, index) => stack.push({ value: item, path: [...path, index] }));
      continue;
    }
    for (const [key, item] of Object.entries(current)) {
      const problem = mapKeyProblem(key);
      if (problem) return { path: [...path, key], message: problem };
      stack.push({ value: item, path: [...path, key] });
    }
  }
  return undefined;
}

export interface BoundedMapOptions {
  /** Deepest nesting inside the map (the map itself is level 1). */
  maxDepth?: number;
  /** Largest size as UTF-8 JSON. */
  maxBytes?: number;
}

/**
 * A free-form JSON object that can be stored as a Firestore map: valid keys at
 * every level, bounded depth and size, only JSON values.
 */
export function boundedMap(options: BoundedMapOptions = {}) {
  const maxDepth = options.maxDepth ?? MAX_INPUT_DEPTH;
  const maxBytes = options.maxBytes ?? MAX_MAP_BYTES;
  // Checked before z.record copies the value: the copy would silently drop a `__proto__` key.
  const checked = z.unknown().superRefine((value, ctx) => {
    if (value === null || typeof value !== "object") return;
    const problem = jsonProblem(value, maxDepth);
    if (problem) {
      ctx.addIssue({ code: "custom", message: problem.message, path: problem.path });
      return;
    }
    // Depth is bounded now, so serialising cannot overflow the stack.
    if (Buffer.byteLength(JSON.stringify(value), "utf8") > maxBytes) {
      ctx.addIssue({ code: "custom", message: `at most ${maxBytes} bytes as JSON` });
    }
  });
  return checked.pipe(z.record(z.string(), z.unknown()));
}
