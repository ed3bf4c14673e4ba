/**
 * The Redis gateway's bound on a call (adapters/redis.ts) against a real redis-server: a call Redis answered
 * in time is not failed because the event loop read the answer late, and a call Redis does not answer fails
 * at the bound; and the calls that arrive while the first connection is made share one wait for it, also after
 * the gateway was closed and opened again while a wait was under way.
 */
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import type { EventEmitter } from "node:events";
import { RedisGateway, RedisUnavailable } from "../../functions/src/adapters/redis";
import { suite } from "../support/suite";

/** Blocks the event loop, as a long synchronous task or a CPU-starved instance does. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy
  }
}

describe("integration: the Redis gateway's command timeout", function () {
  this.timeout(30_000);
  let gateway: RedisGateway;

  beforeEach(async () => {
    // One failure would open the breaker, for longer than the test.
    gateway = new RedisGateway({
      url: suite.redisUrl,
      commandTimeoutMs: 50,
      connectWaitMs: 2_000,
      breaker: { failureThreshold: 1, cooldownMs: 60_000 },
    });
    assert.equal(await gateway.run((client) => client.ping()), "PONG");
  });
  afterEach(async () => {
    await gateway.close();
  });

  it("when the event loop stalls past the timeout after a command is sent, then Redis's answer, waiting on the socket, is taken and the breaker stays closed", async () => {
    const answer = await gateway.run((client) => {
      const reply = client.ping("sent-before-the-stall");
      stall(300);
      return reply;
    });
    assert.equal(answer, "sent-before-the-stall");
    assert.equal(await gateway.run((client) => client.ping()), "PONG", "the breaker did not open");
  });

  it("when Redis does not answer within the timeout, then the call fails with RedisUnavailable and the breaker opens", async () => {
    // Redis holds every client's commands for 400 ms (this connection's PAUSE itself is answered).
    await gateway.run((client) => client.call("CLIENT", "PAUSE", "400", "ALL"));
    await assert.rejects(
      gateway.run((client) => client.ping()),
      (error: unknown) => error instanceof RedisUnavailable && /no answer within 50 ms/.test(error.message),
    );
    await assert.rejects(
      gateway.run((client) => client.ping()),
      (error: unknown) => error instanceof RedisUnavailable && /circuit open/.test(error.message),
    );
  });
});

describe("integration: the Redis gateway's first connection", function () {
  this.timeout(30_000);

  it("when many calls arrive before the connection is ready, then they share one wait: all answered, no listener-leak warning", async () => {
    // A new gateway connects on its first call; an instance's concurrent requests all wait for that connection.
    const gateway = new RedisGateway({
      url: suite.redisUrl,
      commandTimeoutMs: 2_000,
      connectWaitMs: 5_000,
      breaker: { failureThreshold: 3, cooldownMs: 5_000 },
    });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on("warning", onWarning);
    try {
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, index) => gateway.run((client) => client.echo(`call-${index}`))),
      );
      assert.deepEqual(
        answers,
        Array.from({ length: 40 }, (_, index) => `call-${index}`),
      );
      // Node emits the warning on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.filter((warning) => warning.startsWith("MaxListenersExceededWarning")),
        [],
      );
    } finally {
      process.off("warning", onWarning);
      await gateway.close();
    }
  });

  it("when the gateway is closed while a call waits for the connection and called again, then the old wait's end does not drop the new one: later calls share it", async () => {
    // A server that accepts and never answers: ioredis's ready check waits on it, so a connection stays not ready.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    const gateway = new RedisGateway({
      url: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 5_000,
      connectWaitMs: 5_000,
      breaker: { failureThreshold: 100, cooldownMs: 5_000 },
    });
    const clientOf = () => (gateway as unknown as { client: EventEmitter | undefined }).client;
    try {
      const first = gateway.run((client) => client.ping());
      await gateway.close(); // the first client's wait ends later, when its connection has closed
      const second = gateway.run((client) => client.ping());
      await assert.rejects(first, RedisUnavailable);
      // The second call is waiting on the new client by now (it was made before the first's wait ended).
      const waiting = clientOf()?.listenerCount("ready") ?? 0;
      assert.ok(waiting > 0, "the second call waits for the new client");
      const third = gateway.run((client) => client.ping());
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(clientOf()?.listenerCount("ready"), waiting, "the third call shares the second's wait");
      await gateway.close();
      await Promise.allSettled([second, third]);
    } finally {
      await gateway.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
