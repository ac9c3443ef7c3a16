// Run Eclipse Tahu's JavaScript Sparkplug edge node (npm sparkplug-client) against a test broker, so
// that `seam host` ingests births and data produced by code we did not write.
// Usage: node sparkplug_edge.js <mqtt://host:port> <group> <edge node> <device> <data messages>
// Publishes NBIRTH and DBIRTH on connect, then <data messages> DDATA with an increasing Int32 "count"
// and a Double "level" (one ms apart), answers a Rebirth NCMD with new births, then prints
// "done <n>" and waits for stdin to close (the test ends it).
"use strict";
const sparkplug = require("sparkplug-client");

const [url, groupId, edgeNode, deviceId, countText] = process.argv.slice(2);
const total = parseInt(countText, 10);
const client = sparkplug.newClient({
  serverUrl: url,
  username: "",
  password: "",
  groupId,
  edgeNode,
  clientId: `tahu-${edgeNode}`,
  version: "spBv1.0",
  publishDeath: true,
});
const start = Date.now() - total - 10;
let values = { count: 0, level: 0.0 };

function birth() {
  client.publishNodeBirth({
    timestamp: Date.now(),
    metrics: [
      { name: "Node Control/Rebirth", type: "Boolean", value: false },
      { name: "uptime", type: "Int64", value: 1 },
    ],
  });
  client.publishDeviceBirth(deviceId, {
    timestamp: Date.now(),
    metrics: [
      { name: "count", type: "Int32", value: values.count, timestamp: start },
      { name: "level", type: "Double", value: values.level, timestamp: start },
    ],
  });
}

let sent = false;
client.on("birth", () => {
  birth();
  if (sent) return;
  sent = true;
  for (let i = 1; i <= total; i++) {
    values = { count: -i, level: i * 0.5 };
    client.publishDeviceData(deviceId, {
      timestamp: Date.now(),
      metrics: [
        { name: "count", type: "Int32", value: values.count, timestamp: start + i },
        { name: "level", type: "Double", value: values.level, timestamp: start + i },
      ],
    });
  }
  process.stdout.write(`done ${total}\n`);
});
client.on("ncmd", (payload) => {
  for (const metric of payload.metrics || []) {
    if (metric.name === "Node Control/Rebirth" && metric.value) {
      process.stdout.write("rebirth\n");
      birth();
    }
  }
});
process.stdin.on("end", () => {
  client.stop();
  setTimeout(() => process.exit(0), 200);
});
process.stdin.resume();
