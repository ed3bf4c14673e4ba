/**
 * Redaction for audit entries: secrets, tokens and keys never reach the log,
 * e-mail addresses are masked. Pure functions.
 */

const SECRET_KEY = /(secret|token|password|passwd|api[_-]?key|apikey|credential|private[_-]?key|authorization)/i;
const EMAIL = /^([^@\s]{1,64})@([^@\s]+\.[^@\s]+)$/;

export const REDACTED = "[redacted]";

/** j***@example.com: enough to recognise, not to harvest. */
export function maskEmail(value: string): string {
  const match = EMAIL.exec(value);
  if (!match) return value;
  return `${match[1][0]}***@${match[2]}`;
}

/** A deep copy of `value` with secret-looking fields replaced and e-mail addresses masked. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 20) return REDACTED;
  if (typeof value === "string") return maskEmail(value);
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  if (value !== null && typeof value === "object") {
    if (isTimestampLike(value)) return value.toDate().toISOString();
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = SECRET_KEY.test(key) ? REDACTED : redact(item, depth + 1);
    }
    return out;
  }
  return value;
}

/** Top-level fields whose values differ between before and after (added, removed or changed). */
export function changedFields(
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown> | undefined,
): string[] {
  const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
  return [...keys].filter((key) => stable(before?.[key]) !== stable(after?.[key])).sort();
}

function stable(value: unknown): string {
  if (isTimestampLike(value)) return value.toDate().toISOString();
  return (
    JSON.stringify(value, (_key, item: unknown) => (isTimestampLike(item) ? item.toDate().toISOString() : item)) ??
    "undefined"
  );
}

function isTimestampLike(value: unknown): value is { toDate(): Date } {
  return typeof value === "object" && value !== null && typeof (value as { toDate?: unknown }).toDate === "function";
}
