/**
 * Redis behind a circuit breaker.
 *
 * Redis only accelerates the suite, so every call is bounded: no offline queue,
 * a short command timeout, a short wait for the first connection, and after
 * repeated failures the breaker stays open for a cooldown during which calls
 * fail at once. Callers catch `RedisUnavailable` and fall back.
 */
import type { Redis } from "ioredis";
import { REDIS_COMMAND_TIMEOUT_MS, REDIS_URL } from "../config";
import { logs } from "../shared/logs";

export class RedisUnavailable extends Error {
  constructor(reason: string) {
    super(`redis unavailable: ${reason}`);
    this.name = "RedisUnavailable";
  }
}

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  failureThreshold: number;
  /** How long an open breaker refuses calls before letting one through. */
  cooldownMs: number;
}

/** A consecutive-failure circuit breaker with a half-open probe after the cooldown. */
export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;

  constructor(
    private readonly options: BreakerOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** True while calls should not be attempted. */
  isOpen(): boolean {
    return this.openUntil > this.now();
  }

  recordSuccess(): void {
    if (this.failures >= this.options.failureThreshold) logs.redisCircuitClosed();
    this.failures = 0;
    this.openUntil = 0;
  }

  recordFailure(): void {
    this.failures += 1;
    if (this.failures >= this.options.failureThreshold) {
      this.openUntil = this.now() + this.options.cooldownMs;
      if (this.failures === this.options.failureThreshold) {
        logs.redisCircuitOpened(this.failures, this.options.cooldownMs);
      }
    }
  }
}

export interface RedisGatewayOptions {
  url: string;
  commandTimeoutMs: number;
  connectWaitMs: number;
  breaker: BreakerOptions;
}

/** One lazily connected ioredis client with bounded calls. */
export class RedisGateway {
  private client: Redis | undefined;
  private connecting: Promise<Redis> | undefined;
  private readonly breaker: CircuitBreaker;

  constructor(private readonly options: RedisGatewayOptions) {
    this.breaker = new CircuitBreaker(options.breaker);
  }

  get enabled(): boolean {
    return this.options.url !== "";
  }

  /** Runs `fn` with a connected client, or throws RedisUnavailable without waiting long. */
  async run<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    if (!this.enabled) throw new RedisUnavailable("disabled by configuration");
    if (this.breaker.isOpen()) throw new RedisUnavailable("circuit open");
    try {
      const redis = await this.connected();
      const result = await this.withinCommandTimeout(() => fn(redis));
      this.breaker.recordSuccess();
      return result;
    } catch (error) {
      this.breaker.recordFailure();
      if (error instanceof RedisUnavailable) throw error;
      throw new RedisUnavailable(error instanceof Error ? error.message : String(error));
    }
  }

  /**
   * The call's answer, or RedisUnavailable once the command timeout has passed since it was sent. When the timer
   * fires late because the event loop was stalled (a long synchronous task, a CPU-starved instance), the answer
   * may already be waiting, unread, on the socket: the loop reads sockets after it runs timers, so the call is
   * declared timed out only after that read (setImmediate), and a reply that came in time counts as one. Otherwise
   * a stall past the timeout failed calls Redis had answered, and three of them opened the breaker.
   */
  private async withinCommandTimeout<T>(send: () => Promise<T>): Promise<T> {
    const ms = this.options.commandTimeoutMs;
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    // Started before the commands are sent, so a stall while sending counts against the call.
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          setImmediate(() => {
            if (!answered) reject(new RedisUnavailable(`no answer within ${ms} ms`));
          }),
        ms,
      );
    });
    try {
      const reply = send();
      const answer = reply.finally(() => (answered = true));
      return await Promise.race([answer, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Hands `fn`'s commands to the connection now and does not wait for the reply: with a ready connection they are
   * written before `send` returns, so whatever the caller does next (answering a request) follows them, and a
   * later call on this gateway is applied after them (one connection, in order). The reply still counts for the
   * breaker. Returns false, having sent nothing, when a call would fail at once (disabled, breaker open, not
   * connected) or `fn` throws before it sends.
   */
  send(fn: (redis: Redis) => Promise<unknown>): boolean {
    const client = this.client;
    if (!this.enabled || this.breaker.isOpen() || client?.status !== "ready") return false;
    let reply: Promise<unknown>;
    try {
      reply = fn(client);
    } catch {
      return false;
    }
    reply.then(
      () => this.breaker.recordSuccess(),
      () => this.breaker.recordFailure(),
    );
    return true;
  }

  /** Closes the connection (tests and scripts; functions keep it for the instance's life). */
  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.connecting = undefined;
    if (client) client.disconnect();
  }

  private async connected(): Promise<Redis> {
    const redis = this.client ?? this.create();
    if (redis.status === "ready") return redis;
    // Lost and reconnecting in the background: fail now rather than wait for it.
    if (redis.status === "reconnecting") throw new RedisUnavailable("reconnecting");
    if (redis.status === "wait") redis.connect().catch(() => undefined);
    // One wait for every caller that arrives while the connection is made (an instance's concurrent requests):
    // a wait per caller put a listener per caller on the client, and Node warned of a leak past ten.
    if (!this.connecting) {
      // Cleared only if still the current wait: one for a client closed meanwhile settles after a newer one began.
      const waiting = this.readyOf(redis).finally(() => {
        if (this.connecting === waiting) this.connecting = undefined;
      });
      this.connecting = waiting;
    }
    return this.connecting;
  }

  /** `redis` once it is ready, or a RedisUnavailable after connectWaitMs or when the attempt fails. */
  private async readyOf(redis: Redis): Promise<Redis> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new RedisUnavailable(`not connected (${redis.status})`)),
        this.options.connectWaitMs,
      );
      const onReconnecting = () => done(new RedisUnavailable("connection refused"));
      const onReady = () => done();
      const onEnd = () => done(new RedisUnavailable("connection closed"));
      const done = (error?: Error) => {
        clearTimeout(timer);
        redis.off("ready", onReady);
        redis.off("end", onEnd);
        redis.off("reconnecting", onReconnecting);
        if (error) reject(error);
        else resolve();
      };
      redis.once("ready", onReady);
      redis.once("end", onEnd);
      redis.once("reconnecting", onReconnecting);
    });
    return redis;
  }

  private create(): Redis {
    const IORedis = (require("ioredis") as typeof import("ioredis")).default;
    const client = new IORedis(this.options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // The caller's bound is withinCommandTimeout's; this one only clears commands nobody waits for any more
      // (a reply that never comes), well after it.
      commandTimeout: Math.max(this.options.commandTimeoutMs * 10, 5_000),
      connectTimeout: Math.max(this.options.connectWaitMs, 200),
      // Keep reconnecting in the background with capped backoff; callers never wait on it.
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    });
    // Errors surface through rejected commands; an unhandled 'error' event would crash the instance.
    client.on("error", () => undefined);
    this.client = client;
    return client;
  }
}

let gateway: RedisGateway | undefined;

/** The instance-wide Redis gateway, configured from params on first use. */
export function redis(): RedisGateway {
  if (!gateway) {
    const commandTimeoutMs = REDIS_COMMAND_TIMEOUT_MS.value();
    const url = REDIS_URL.value();
    // Everything Redis does is an accelerator, so the suite runs without it (callers see RedisUnavailable).
    if (url === "") logs.componentDisabled("redis", "REDIS_URL is empty");
    gateway = new RedisGateway({
      url,
      commandTimeoutMs,
      // A cold instance's first connection may take longer than a command; a refused one fails at once.
      connectWaitMs: Math.max(commandTimeoutMs, 1000),
      breaker: { failureThreshold: 3, cooldownMs: 5000 },
    });
  }
  return gateway;
}
