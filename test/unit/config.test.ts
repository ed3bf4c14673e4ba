/** The deploy params: what a function gets when nothing is configured. */
import assert from "node:assert/strict";
import * as config from "../../functions/src/config";

/** Every declared param with its default (secrets have none). */
function declaredDefaults(): Array<{ name: string; default: unknown }> {
  return (Object.values(config) as unknown[])
    .filter(
      (value): value is { name: string; options?: { default?: unknown } } =>
        typeof value === "object" && value !== null && "name" in value,
    )
    .map((param) => ({ name: param.name, default: param.options?.default }));
}

describe("unit: deploy params", () => {
  it("when the params are read, then every one of them is found", () => {
    const names = declaredDefaults().map((param) => param.name);
    for (const name of ["REDIS_URL", "MONGODB_URI", "MODEL_PROVIDERS", "LANCEDB_URI", "METERING_API_KEY"])
      assert.ok(names.includes(name), name);
  });

  it("when a function is deployed without configuration, then no default points at this machine", () => {
    for (const param of declaredDefaults()) {
      assert.doesNotMatch(
        JSON.stringify(param.default ?? ""),
        /127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0/i,
        `${param.name} defaults to a loopback address`,
      );
    }
  });

  it("when Redis, MongoDB and the default model providers are not configured, then they default to empty (disabled)", () => {
    const defaults = Object.fromEntries(declaredDefaults().map((param) => [param.name, param.default]));
    assert.deepEqual([defaults.REDIS_URL, defaults.MONGODB_URI, defaults.MODEL_PROVIDERS], ["", "", ""]);
  });
});
