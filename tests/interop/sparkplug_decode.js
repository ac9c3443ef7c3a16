// Decode Sparkplug B payloads with Eclipse Tahu's JavaScript codec (npm sparkplug-payload), an
// implementation independent of Seam's. Input: one base64 payload per line on stdin. Output: one JSON
// object per line, Tahu's decoding, with 64-bit integers as decimal strings and bytes as hex.
// Also prints `raw`, protobufjs's field-level view, for fields Tahu's value mapping does not expose.
// Like a host application, it learns each alias's datatype from the births it has read: Sparkplug 3.0
// data messages do not repeat the datatype, and Tahu's decoder needs it to pick the value field. The
// datatype is added from the birth (counted in `typedFromBirth`) before Tahu decodes the message.
"use strict";
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const proto = require("sparkplug-payload/lib/sparkplugPayloadProto");
const Long = require("long");

const Payload = proto.org.eclipse.tahu.protobuf.Payload;

function plain(value) {
  if (value === null || value === undefined) return value;
  if (Long.isLong(value)) return value.toString();
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return value;
}

const aliasTypes = new Map();

function withBirthDatatypes(bytes) {
  const message = Payload.decode(bytes);
  let typed = 0;
  for (const metric of message.metrics) {
    const alias = metric.alias === null || metric.alias === undefined ? null : String(metric.alias);
    if (metric.datatype) {
      if (alias !== null) aliasTypes.set(alias, metric.datatype);
    } else if (alias !== null && aliasTypes.has(alias)) {
      metric.datatype = aliasTypes.get(alias);
      typed += 1;
    }
  }
  return { bytes: typed ? Buffer.from(Payload.encode(message).finish()) : bytes, typed };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  line = line.trim();
  if (!line) return;
  const bytes = Buffer.from(line, "base64");
  try {
    const raw = Payload.toObject(Payload.decode(bytes), { longs: String, defaults: false });
    const typed = withBirthDatatypes(bytes);
    const decoded = sparkplug.decodePayload(typed.bytes);
    const out = { ok: true, tahu: plain(decoded), raw: plain(raw), typedFromBirth: typed.typed };
    process.stdout.write(JSON.stringify(out) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + "\n");
  }
});
