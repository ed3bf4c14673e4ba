/**
 * The one way callables are declared: auth first, then the strict zod schema,
 * then the use case; every error mapped to an HttpsError in one place.
 */
import {
  HttpsError,
  onCall,
  type CallableOptions,
  type CallableRequest,
  type Request,
} from "firebase-functions/v2/https";
import type { Response } from "express";
import { ZodError, type ZodType } from "zod";
import { DomainError, InvalidInput, PermissionDenied, Unauthenticated, clientErrorMap } from "./errors";
import { MAX_BODY_DEPTH, PROTOTYPE_KEYS } from "./ids";
import { logs } from "./logs";

/** Who is calling, from `request.auth` only. */
export interface Caller {
  uid: string;
  admin: boolean;
  email?: string;
}

export type Access = "user" | "admin" | "public";

/** What a handler is given: a signed-in caller unless the function is public. */
export type CallerFor<A extends Access> = A extends "public" ? Caller | undefined : Caller;

export interface CallableSpec<I, O, A extends Access> {
  /** Stable name used in logs. */
  name: string;
  access: A;
  schema: ZodType<I>;
  handler: (input: I, caller: CallerFor<A>) => Promise<O>;
  options?: CallableOptions;
}

export function callable<I, O, A extends Access>(spec: CallableSpec<I, O, A>) {
  const handler = onCall(spec.options ?? {}, async (request: CallableRequest<unknown>) => {
    try {
      const caller = callerOf(request);
      if (spec.access !== "public" && !caller) throw new Unauthenticated();
      if (spec.access === "admin" && !caller?.admin) throw new PermissionDenied("This function is for administrators.");
      const input = parseInput(spec.schema, request.data);
      // The checks above are what CallerFor<A> states; TypeScript cannot narrow a generic conditional type itself.
      return await spec.handler(input, caller as CallerFor<A>);
    } catch (error) {
      throw toHttpsError(error, spec.name);
    }
  });
  return guardRawBody(handler);
}

/**
 * Checks the raw body before the SDK decodes it: its decoding recurses (a body nested 20,000 deep overflows the
 * stack and is answered `internal`) and drops `__proto__` keys silently. The returned function keeps the SDK
 * function's properties (`__endpoint`, `run`, …), so deployment and tests see the same callable.
 */
function guardRawBody<F extends (request: Request, response: Response) => unknown>(handler: F): F {
  const guarded = (request: Request, response: Response) => {
    try {
      rejectPrototypeKeys((request.body as { data?: unknown } | undefined)?.data, ["data"]);
    } catch (error) {
      const httpsError = toHttpsError(error, "callable");
      response.status(httpsError.httpErrorCode.status).json({ error: httpsError.toJSON() });
      return;
    }
    return handler(request, response);
  };
  return Object.defineProperties(guarded, Object.getOwnPropertyDescriptors(handler)) as unknown as F;
}

export function callerOf(request: { auth?: { uid: string; token: Record<string, unknown> } }): Caller | undefined {
  if (!request.auth) return undefined;
  const token = request.auth.token;
  return {
    uid: request.auth.uid,
    admin: token.admin === true,
    email: typeof token.email === "string" ? token.email : undefined,
  };
}

/** Parses untrusted input; a ZodError becomes InvalidInput with field-level issues. */
export function parseInput<I>(schema: ZodType<I>, data: unknown): I {
  try {
    return schema.parse(data ?? {}, { error: clientErrorMap });
  } catch (error) {
    if (error instanceof ZodError) throw InvalidInput.fromZod(error);
    throw error;
  }
}

/**
 * Refuses input that carries prototype-polluting keys anywhere, before anything reads it, and input nested
 * deeper than any schema accepts. Walked with an explicit stack: a body nested 20,000 deep must get
 * `invalid-argument`, not overflow the call stack.
 */
export function rejectPrototypeKeys(value: unknown, root: string[] = []): void {
  const stack: Array<{ value: unknown; path: string[] }> = [{ value, path: root }];
  while (stack.length > 0) {
    const { value: current, path } = stack.pop()!;
    if (current === null || typeof current !== "object") continue;
    if (path.length > MAX_BODY_DEPTH) throw invalidAt(path, `nested deeper than ${MAX_BODY_DEPTH} levels`, "too_big");
    for (const key of Object.keys(current)) {
      if (PROTOTYPE_KEYS.has(key)) throw invalidAt([...path, key], "reserved key", "unrecognized_keys");
      stack.push({ value: (current as Record<string, unknown>)[key], path: [...path, key] });
    }
  }
}

function invalidAt(path: string[], message: string, code: string): InvalidInput {
  // A callable's body wraps its input in `data`; clients know their fields without it.
  const at = path.filter((part) => part !== "data").join(".");
  return new InvalidInput(`Invalid input (${at || "input"}: ${message})`, [{ path: at, message, code }]);
}

/** The single mapping from anything thrown to what a client may see. */
export function toHttpsError(error: unknown, where: string): HttpsError {
  if (error instanceof HttpsError) return error;
  if (error instanceof DomainError) return new HttpsError(error.code, error.message, error.details);
  if (error instanceof ZodError) {
    const invalid = InvalidInput.fromZod(error);
    return new HttpsError(invalid.code, invalid.message, invalid.details);
  }
  logs.unexpectedError(where, error);
  return new HttpsError("internal", "Internal error.");
}
