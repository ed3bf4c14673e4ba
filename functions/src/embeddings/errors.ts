/**
 * The failures of the embeddings capability, split by whether a retry can fix
 * them: the consumer dead-letters permanent ones at once and retries transient ones.
 */

/** A failure that no retry can fix (missing object, bad configuration). */
export class PermanentFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PermanentFailure";
  }
}

/**
 * A provider failure. `transient` ones (429, 5xx, timeouts, network) are worth
 * retrying later; the others (other 4xx, malformed answers) never succeed on retry.
 */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly status?: number,
    /** Server-suggested wait (Retry-After), in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "ProviderError";
  }

  static fromStatus(provider: string, status: number, body: string, retryAfter: string | null): ProviderError {
    const transient = status === 408 || status === 429 || status >= 500;
    return new ProviderError(
      `${provider} answered HTTP ${status}: ${body.replace(/\s+/g, " ").slice(0, 200)}`,
      transient,
      status,
      parseRetryAfter(retryAfter),
    );
  }
}

function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
