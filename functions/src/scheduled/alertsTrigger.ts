/** Admin callable `acknowledgeAlert({alert_id})`. */
import { callable } from "../shared/callable";
import { AcknowledgeAlertInput } from "./schemas";

export const acknowledgeAlert = callable({
  name: "acknowledgeAlert",
  access: "admin",
  schema: AcknowledgeAlertInput,
  handler: async (input, caller) => {
    const [{ firestore }, alerts, { systemClock }, { logs }] = await Promise.all([
      import("../adapters/firebase"),
      import("./alerts"),
      import("../shared/time"),
      import("../shared/logs"),
    ]);
    const uid = caller?.uid ?? "";
    const result = await alerts.acknowledgeAlert({ db: firestore(), clock: systemClock }, input, uid);
    logs.alertAcknowledged(result.alert_id, uid, result.changed);
    return result;
  },
});
