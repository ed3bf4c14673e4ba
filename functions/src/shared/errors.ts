/**
 * Typed domain errors and their one mapping to HttpsError.
 *
 * Use cases throw these; the callable wrapper turns them into HttpsError codes.
 * Anything else becomes `internal` with a generic message, so internals never
 * reach a client.
 */
import type { ZodError, core } from "zod";

export type ErrorCode =
  | "invalid-argument"
  | "failed-precondition"
  | "not-found"
  | "already-exists"
  | "permission-denied"
  | "unauthenticated"
  | "resource-exhausted"
  | "unavailable"
  | "deadline-exceeded"
  | "aborted";

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidInput extends DomainError {
  constructor(message: string, issues: FieldIssue[]) {
    super("invalid-argument", message, { issues });
  }

  static fromZod(error: ZodError): InvalidInput {
    const issues = fieldIssues(error.issues);
    const first = issues[0];
    const summary = first ? `${first.path || "input"}: ${first.message}` : "invalid input";
    return new InvalidInput(`Invalid input (${summary})`, issues);
  }
}

export interface FieldIssue {
  path: string;
  message: string;
  code: string;
}

/**
 * zod issues as the fields a client named. A bad key of a map is reported by zod 4 as one
 * `invalid_key` ("Invalid key in record") wrapping the key schema's own issues; those carry our
 * messages ("reserved key", "metadata keys are lower_snake_case"), so they are reported instead.
 */
function fieldIssues(issues: readonly core.$ZodIssue[], prefix: readonly PropertyKey[] = []): FieldIssue[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === "invalid_key" && issue.issues.length > 0) return fieldIssues(issue.issues, path);
    return [{ path: path.map(String).join("."), message: issue.message, code: issue.code }];
  });
}

/** The JSON names of zod's type names: clients send objects and integers, not records and ints. */
const JSON_TYPE_NAMES: Record<string, string> = { record: "object", int: "integer" };

function jsonTypeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * Per-parse messages for type mismatches, in the words of the JSON a client sent: zod 4 says
 * "Invalid input: expected record, received undefined" where the client left a field out or
 * sent an array. Messages a schema sets itself, and every other issue, keep zod's wording.
 */
export const clientErrorMap: core.$ZodErrorMap = (issue) => {
  if (issue.code !== "invalid_type") return undefined;
  if (issue.input === undefined) return "Required";
  const received = issue.expected === "int" && typeof issue.input === "number" ? "float" : jsonTypeOf(issue.input);
  return `Expected ${JSON_TYPE_NAMES[issue.expected] ?? issue.expected}, received ${received}`;
};

export class Unauthenticated extends DomainError {
  constructor() {
    super("unauthenticated", "Sign in to call this function.");
  }
}

export class PermissionDenied extends DomainError {
  constructor(message = "You are not allowed to do this.") {
    super("permission-denied", message);
  }
}

export class NotFound extends DomainError {
  constructor(what: string) {
    super("not-found", `${what} was not found.`);
  }
}

export class Unavailable extends DomainError {
  constructor(service: string, reason: string) {
    super("unavailable", `${service} is unavailable: ${reason}`);
  }
}
