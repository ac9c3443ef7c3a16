// An OPC UA client that is not built on asyncua (node-opcua), for the opcua_server sink's tests.
//
//   node opcua_client.js ENDPOINT POLICY MODE CERT.pem KEY.pem PKI_DIR USER NODE_ID HISTORY_FROM_MS HISTORY_TO_MS
//
// The password comes on the first line of stdin (never on the command line). The client connects with
// the given security policy and mode, logs in, then reports on stdout, one line each, JSON after a tag:
//   BROWSED {"path": [...]}         browse names from Objects down to NODE_ID, found by browsing
//   READ {"value":..,"status":..,"sourceTimestamp":..,"typeDefinition":..,"unitId":..,"range":[lo,hi]}
//   SUBSCRIBED                      a monitored item on NODE_ID is live; the test then changes the value
//   CHANGED {"value": ...}          for each data change notification (the first is the current value)
//   (the test writes "history" on stdin once it has seen the change it waited for)
//   HISTORY {"count": n, "pages": p, "first": v, "last": v}   raw history, following continuation points
//   WRITE {"status": name}          the result of writing NODE_ID (the server must refuse it)
//   DONE
"use strict";
const readline = require("readline");
const {
  OPCUAClient,
  OPCUACertificateManager,
  MessageSecurityMode,
  SecurityPolicy,
  AttributeIds,
  DataType,
  TimestampsToReturn,
  ReadRawModifiedDetails,
  HistoryReadRequest,
  BrowseDirection,
  resolveNodeId,
  UserTokenType,
} = require("node-opcua");

const [endpoint, policy, mode, certFile, keyFile, pkiDir, user, nodeId, fromMs, toMs] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const incoming = [];
let waiting = null;
lines.on("line", (line) => {
  if (waiting) {
    const w = waiting;
    waiting = null;
    w(line);
  } else incoming.push(line);
});
function nextLine() {
  if (incoming.length) return Promise.resolve(incoming.shift());
  return new Promise((resolve) => (waiting = resolve));
}
function say(tag, data) {
  process.stdout.write(`\n${tag}${data === undefined ? "" : " " + JSON.stringify(data)}\n`);
}

async function browsePath(session, target) {
  // Breadth-first from Objects until the target node id is found; returns the browse names on the way.
  const queue = [{ id: resolveNodeId("ObjectsFolder"), path: [] }];
  const seen = new Set();
  while (queue.length) {
    const { id, path } = queue.shift();
    if (seen.has(id.toString())) continue;
    seen.add(id.toString());
    const result = await session.browse({
      nodeId: id,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      resultMask: 63,
    });
    for (const ref of result.references || []) {
      const next = { id: ref.nodeId, path: [...path, ref.browseName.name] };
      if (ref.nodeId.toString() === target.toString()) return next.path;
      if (ref.nodeId.namespace !== 0 || path.length === 0) queue.push(next);
    }
  }
  return null;
}

async function main() {
  const password = await nextLine();
  const certificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: true, // the test's server certificate is self-signed
  });
  const client = OPCUAClient.create({
    applicationName: "seam-test-node-opcua",
    applicationUri: "urn:seam:test:client",
    endpointMustExist: false,
    securityMode: MessageSecurityMode[mode],
    securityPolicy: SecurityPolicy[policy],
    certificateFile: certFile,
    privateKeyFile: keyFile,
    clientCertificateManager: certificateManager,
    connectionStrategy: { maxRetry: 1, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName: user, password });
  const target = resolveNodeId(nodeId);

  say("BROWSED", { path: await browsePath(session, target) });

  const dv = await session.read({ nodeId: target, attributeId: AttributeIds.Value });
  const typeRefs = await session.browse({
    nodeId: target,
    referenceTypeId: "HasTypeDefinition",
    browseDirection: BrowseDirection.Forward,
    resultMask: 63,
  });
  const eu = await session.read({ nodeId: nodeId + "#EngineeringUnits", attributeId: AttributeIds.Value });
  const range = await session.read({ nodeId: nodeId + "#EURange", attributeId: AttributeIds.Value });
  say("READ", {
    value: dv.value.value,
    status: dv.statusCode.name,
    sourceTimestamp: dv.sourceTimestamp ? dv.sourceTimestamp.getTime() : null,
    typeDefinition: typeRefs.references[0].nodeId.toString(),
    unitId: eu.value.value ? eu.value.value.unitId : null,
    range: range.value.value ? [range.value.value.low, range.value.value.high] : null,
  });

  const subscription = await session.createSubscription2({
    requestedPublishingInterval: 50,
    requestedMaxKeepAliveCount: 20,
    requestedLifetimeCount: 600,
    publishingEnabled: true,
  });
  const item = await subscription.monitor(
    { nodeId: target, attributeId: AttributeIds.Value },
    { samplingInterval: 0, discardOldest: true, queueSize: 100 },
    TimestampsToReturn.Both
  );
  item.on("changed", (value) => say("CHANGED", { value: value.value.value, status: value.statusCode.name }));
  say("SUBSCRIBED");
  await nextLine();
  await subscription.terminate();

  let continuationPoint = null;
  const values = [];
  let pages = 0;
  do {
    const response = await session.historyRead(
      new HistoryReadRequest({
      historyReadDetails: new ReadRawModifiedDetails({
        startTime: new Date(Number(fromMs)),
        endTime: new Date(Number(toMs)),
        numValuesPerNode: 0,
        isReadModified: false,
        returnBounds: false,
      }),
      nodesToRead: [{ nodeId: target, continuationPoint }],
      timestampsToReturn: TimestampsToReturn.Both,
      releaseContinuationPoints: false,
      })
    );
    const result = response.results[0];
    pages += 1;
    for (const value of result.historyData.dataValues || []) values.push(value.value.value);
    continuationPoint = result.continuationPoint && result.continuationPoint.length ? result.continuationPoint : null;
  } while (continuationPoint && pages < 1000);
  say("HISTORY", { count: values.length, pages, first: values[0], last: values[values.length - 1] });

  let status;
  try {
    status = (
      await session.write({
        nodeId: target,
        attributeId: AttributeIds.Value,
        value: { value: { dataType: DataType.Float, value: 99 } },
      })
    ).name;
  } catch (err) {
    status = String(err.message || err);
  }
  say("WRITE", { status });
  await session.close();
  await client.disconnect();
  say("DONE");
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
