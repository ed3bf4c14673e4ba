/**
 * Typed domain errors and their one mapping to HttpsError.
 *
 * Use cases throw these; the callable wrapper turns them into HttpsError codes.
 * Anything else becomes `internal` with a generic message, so internals never
 * reach a client.
 */
import type { ZodError } from "zod";

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
    const issues = error.issues.map((issue) => ({
      path: issue.path.map(String).join("."),
      message: issue.message,
      code: issue.code,
    }));
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
