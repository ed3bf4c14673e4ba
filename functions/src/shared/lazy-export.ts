/**
 * A Cloud Function declared when its export is first read.
 *
 * index.ts loads a domain's `functions.ts` for any of its functions, so an
 * instance serving one function evaluates every declaration in that file. A
 * declaration that pulls in what its neighbours never need (firebase-functions'
 * event providers load the Firestore or RTDB SDK at import; a callable loads
 * the callable wrapper and zod) is wrapped here instead:
 * `export const name = onFirstRead(() => onX(...))`. index.ts's getter calls
 * `declared()` when the export is read (for deploy discovery, or in the
 * function's own instance), and the declaration runs once.
 *
 * A marker object rather than a getter on the module's `exports`: the module
 * stays a plain ES module, which the bundler (functions/build.mjs) needs.
 */
const DECLARE = Symbol("declared on first read");

export interface OnFirstRead {
  readonly [DECLARE]: () => unknown;
}

export function onFirstRead(declare: () => unknown): OnFirstRead {
  let declared: unknown;
  return { [DECLARE]: () => (declared ??= declare()) };
}

/** A domain export as Cloud Functions should see it: the declared function for an `onFirstRead`. */
export function declared(value: unknown): unknown {
  return typeof value === "object" && value !== null && DECLARE in value ? (value as OnFirstRead)[DECLARE]() : value;
}
