// An independent OPC UA client (node-opcua) for the sim's tests: connect, browse Objects/Plant,
// read every variable found there, write one setpoint, print what it saw as JSON on a line starting
// with RESULT.
// Usage: node opcua_browse.js <endpoint> <node id to write> <value>
"use strict";
const { OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, DataType } = require("node-opcua");

async function main() {
  const [endpoint, writeNode, writeValue] = process.argv.slice(2);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  const found = {};
  const plant = await session.browse("ns=2;s=Plant");
  for (const group of plant.references) {
    const children = group.nodeClass === 1 ? (await session.browse(group.nodeId)).references : [group];
    for (const child of children) {
      if (child.nodeClass !== 2) continue; // variables only
      const value = await session.read({ nodeId: child.nodeId, attributeId: AttributeIds.Value });
      found[child.nodeId.toString()] = {
        browseName: child.browseName.toString(),
        value: value.value.value,
        status: value.statusCode.name,
      };
    }
  }
  const written = await session.write({
    nodeId: writeNode,
    attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Double, value: Number(writeValue) } },
  });
  // node-opcua prints its own notices on stdout: mark our line.
  process.stdout.write("\nRESULT " + JSON.stringify({ variables: found, write: written.name }) + "\n");
  await session.close();
  await client.disconnect();
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
