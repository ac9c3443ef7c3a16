// An OPC UA client that is not asyncua (node-opcua), for the monitor's captures: connect without
// security, browse the plant folder, read one variable, write one setpoint, call nothing, close.
// Prints "done" once the session is closed.
//
//   node opcua_capture_client.js ENDPOINT NODE_TO_WRITE VALUE
"use strict";
const { OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, DataType } = require("node-opcua");

async function main() {
  const [endpoint, writeNode, writeValue] = process.argv.slice(2);
  if (!endpoint || !writeNode || writeValue === undefined) {
    console.error("usage: node opcua_capture_client.js ENDPOINT NODE_TO_WRITE VALUE");
    process.exit(2);
  }
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  await session.browse("ns=2;s=Plant");
  await session.read({ nodeId: writeNode, attributeId: AttributeIds.Value });
  const written = await session.write({
    nodeId: writeNode,
    attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Double, value: Number(writeValue) } },
  });
  await session.close();
  await client.disconnect();
  console.log("done " + written.name);
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
