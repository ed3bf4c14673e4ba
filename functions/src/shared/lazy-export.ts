/**
 * Declares a Cloud Function export when it is first read.
 *
 * index.ts loads a domain's `functions.ts` for any of its functions, so an
 * instance serving one function evaluates every declaration in that file. A
 * declaration that pulls in what its neighbours never need (firebase-functions'
 * event providers load the Firestore or RTDB SDK at import; a callable loads
 * the callable wrapper and zod) is made here instead: index.ts reads the
 * export (for deploy discovery, or in the function's own instance), and it is
 * built once.
 */
export function declareOnFirstRead(moduleExports: object, name: string, declare: () => unknown): void {
  let declared: unknown;
  Object.defineProperty(moduleExports, name, { enumerable: true, get: () => (declared ??= declare()) });
}
