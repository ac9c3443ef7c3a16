// An OPC UA server that is not built on asyncua (node-opcua), for the OPC UA driver's tests and benchmark.
//
//   node opcua_server.js PORT [NODES] [INTERVAL_MS]
//
// Endpoint opc.tcp://127.0.0.1:PORT/seam/test, security None, anonymous. Namespace 2 (urn:seam:test):
//   ns=2;s=Counter        Int32, +1 every INTERVAL_MS (default 100)
//   ns=2;s=Level          Double, 2.5 + Counter / 1000
//   ns=2;s=Running        Boolean, true when Counter is even
//   ns=2;s=Starts         UInt16, 42
//   ns=2;s=Name           String, "NODE-OPCUA-PLANT"
//   ns=2;s=Weird          String "not a number" (declared as a float in the tests' contract: a wrong type)
//   ns=2;s=Broken         Double with status BadSensorFailure
//   ns=2;s=Doubtful       Double 7.5 with status UncertainLastUsableValue
//   ns=2;i=100000+k         Double k + Counter, k < NODES (default 0): many changing nodes for the benchmark
//   ns=2;s=BackwashSetpoint Double 10, writable (the command executor's tests)
//   ns=2;s=LockedSetpoint   Double 20, read-only: a write answers BadNotWritable
// Every value carries a source timestamp of when it changed.
// Reads commands on stdin: "sessions" prints "SESSIONS <current session count> <subscription count>".
// Prints "ready" once listening.
"use strict";
const { OPCUAServer, Variant, DataType, StatusCodes, DataValue } = require("node-opcua");

const port = parseInt(process.argv[2], 10);
const nodes = parseInt(process.argv[3] || "0", 10);
const intervalMs = parseInt(process.argv[4] || "100", 10);
if (!(port > 0 && port < 65536) || !(nodes >= 0) || !(intervalMs > 0)) {
  console.error("usage: node opcua_server.js PORT [NODES] [INTERVAL_MS]");
  process.exit(2);
}

async function main() {
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    resourcePath: "/seam/test",
    maxSessions: 20,
    maxConnectionsPerEndpoint: 20,
    serverCapabilities: {
      maxSessions: 20,
      operationLimits: { maxMonitoredItemsPerCall: 2000, maxNodesPerRead: 2000 },
    },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.registerNamespace("urn:seam:test");
  const folder = ns.addFolder(server.engine.addressSpace.rootFolder.objects, { nodeId: "s=Test", browseName: "Test" });
  let counter = 0;
  let changed = new Date();
  const value = (dataType, get, status) => ({
    timestamped_get: () =>
      new DataValue({
        value: new Variant({ dataType, value: get() }),
        statusCode: status || StatusCodes.Good,
        sourceTimestamp: changed,
        serverTimestamp: new Date(),
      }),
  });
  const add = (nodeId, browseName, dataType, get, status) =>
    ns.addVariable({
      componentOf: folder,
      nodeId,
      browseName,
      dataType,
      minimumSamplingInterval: 50,
      value: value(dataType, get, status),
    });
  add("s=Counter", "Counter", DataType.Int32, () => counter);
  add("s=Level", "Level", DataType.Double, () => 2.5 + counter / 1000);
  add("s=Running", "Running", DataType.Boolean, () => counter % 2 === 0);
  add("s=Starts", "Starts", DataType.UInt16, () => 42);
  add("s=Name", "Name", DataType.String, () => "NODE-OPCUA-PLANT");
  add("s=Weird", "Weird", DataType.String, () => "not a number");
  add("s=Broken", "Broken", DataType.Double, () => 0, StatusCodes.BadSensorFailure);
  add("s=Doubtful", "Doubtful", DataType.Double, () => 7.5, StatusCodes.UncertainLastUsableValue);
  let backwash = 10.0;
  ns.addVariable({
    componentOf: folder,
    nodeId: "s=BackwashSetpoint",
    browseName: "BackwashSetpoint",
    dataType: DataType.Double,
    minimumSamplingInterval: 50,
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    value: {
      get: () => new Variant({ dataType: DataType.Double, value: backwash }),
      set: (variant) => {
        backwash = variant.value;
        return StatusCodes.Good;
      },
    },
  });
  ns.addVariable({
    componentOf: folder,
    nodeId: "s=LockedSetpoint",
    browseName: "LockedSetpoint",
    dataType: DataType.Double,
    minimumSamplingInterval: 50,
    accessLevel: "CurrentRead",
    userAccessLevel: "CurrentRead",
    value: { get: () => new Variant({ dataType: DataType.Double, value: 20.0 }) },
  });
  for (let k = 0; k < nodes; k++) {
    add(`i=${100000 + k}`, `N${k}`, DataType.Double, () => k + counter);
  }
  await server.start();
  setInterval(() => {
    counter += 1;
    changed = new Date();
  }, intervalMs);
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (text) => {
    for (const line of text.split("\n")) {
      if (line.trim() === "sessions") {
        process.stdout.write(`SESSIONS ${server.currentSessionCount} ${server.currentSubscriptionCount}\n`);
      }
    }
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdout.write("ready\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
