/** Real pings of each component, through the lazily created adapters. */
import { firestore, realtimeDb } from "../adapters/firebase";
import { lanceDb } from "../adapters/lance";
import { mongoDb } from "../adapters/mongo";
import { pubsub } from "../adapters/pubsub";
import { redis } from "../adapters/redis";
import type { Probes } from "./check";

/**
 * Builds the probes. Creating the clients loads their SDKs synchronously,
 * which on a cold instance takes longer than a probe's timeout, so it happens
 * here, before any probe's clock starts.
 */
export function liveProbes(): Probes {
  const db = firestore();
  const rtdb = realtimeDb();
  const cache = redis();
  const topics = pubsub();
  return {
    firestore: () => db.collection("_health").doc("ping").get(),
    // once() rather than get(): get() is not understood by every RTDB server (the local substitute).
    rtdb: () => rtdb.ref("_health").once("value"),
    redis: () =>
      cache.run(async (client) => {
        const answer = await client.ping();
        if (answer !== "PONG") throw new Error(`unexpected PING answer ${JSON.stringify(answer)}`);
      }),
    mongodb: async () => (await mongoDb()).command({ ping: 1 }),
    lancedb: async () => (await lanceDb()).tableNames(),
    pubsub: () => topics.getTopics({ pageSize: 1, autoPaginate: false }),
  };
}
