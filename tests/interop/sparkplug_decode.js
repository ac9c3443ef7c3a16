// Decode Sparkplug B payloads with Eclipse Tahu's JavaScript codec (npm sparkplug-payload), an
// implementation independent of Seam's. Input: one base64 payload per line on stdin. Output: one JSON
// object per line, Tahu's decoding, with 64-bit integers as decimal strings and bytes as hex.
// Also prints `raw`, protobufjs's field-level view, for fields Tahu's value mapping does not expose.
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

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  line = line.trim();
  if (!line) return;
  const bytes = Buffer.from(line, "base64");
  try {
    const decoded = sparkplug.decodePayload(bytes);
    const raw = Payload.toObject(Payload.decode(bytes), { longs: String, defaults: false });
    process.stdout.write(JSON.stringify({ ok: true, tahu: plain(decoded), raw: plain(raw) }) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + "\n");
  }
});
