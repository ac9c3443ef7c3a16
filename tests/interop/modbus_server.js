// A Modbus/TCP server that is not built on pymodbus (modbus-serial's ServerTCP), serving known values,
// for the Modbus driver's interoperability tests.
//
//   node modbus_server.js PORT
//
// Register a of unit u (holding):  (a * 7 + 3 + u) & 0xffff     for a < 1000
// Register a of unit u (input):    (a * 11 + 5 + u) & 0xffff    for a < 1000
// Holding 1000-1001: 21.5 as float32, ABCD; holding 1002-1003: -7.25 as float32, CDAB.
// Coil a: a % 3 == 0; discrete input a: a % 2 == 1 (a < 1000).
// Writable, for the command executor's tests (per unit, all 0 at start):
//   holding 2000-2099 and coils 2000-2099 keep what is written (functions 5, 6, 16);
//   holding 2100-2109 accept writes and keep their old value (a PLC whose logic overrides a setpoint);
//   holding 2110-2119 answer exception 04 (server device failure) to every write.
// Anything else answers exception 02 (illegal data address). Prints "ready" once listening.
"use strict";
const ModbusRTU = require("modbus-serial");

const port = parseInt(process.argv[2], 10);
if (!(port > 0 && port < 65536)) {
  console.error("usage: node modbus_server.js PORT");
  process.exit(2);
}

function illegal() {
  const error = new Error("illegal data address");
  error.modbusErrorCode = 0x02;
  return error;
}

const floats = Buffer.alloc(8);
floats.writeFloatBE(21.5, 0);
const cdab = Buffer.alloc(4);
cdab.writeFloatBE(-7.25, 0);
// Word swap: the low word first.
cdab.copy(floats, 4, 2, 4);
cdab.copy(floats, 6, 0, 2);

const held = new Map(); // "unit:address" -> value, for the writable ranges
const heldCoils = new Map();

function failure() {
  const error = new Error("server device failure");
  error.modbusErrorCode = 0x04;
  return error;
}

const vector = {
  getHoldingRegister(addr, unitID) {
    if (addr < 1000) return (addr * 7 + 3 + unitID) & 0xffff;
    if (addr < 1004) return floats.readUInt16BE((addr - 1000) * 2);
    if (addr >= 2000 && addr < 2120) return held.get(`${unitID}:${addr}`) || 0;
    throw illegal();
  },
  setRegister(addr, value, unitID) {
    if (addr >= 2000 && addr < 2100) return held.set(`${unitID}:${addr}`, value & 0xffff) && undefined;
    if (addr >= 2100 && addr < 2110) return undefined;
    if (addr >= 2110 && addr < 2120) throw failure();
    throw illegal();
  },
  setCoil(addr, value, unitID) {
    if (addr >= 2000 && addr < 2100) return heldCoils.set(`${unitID}:${addr}`, Boolean(value)) && undefined;
    throw illegal();
  },
  getInputRegister(addr, unitID) {
    if (addr < 1000) return (addr * 11 + 5 + unitID) & 0xffff;
    throw illegal();
  },
  getCoil(addr, unitID) {
    if (addr < 1000) return addr % 3 === 0;
    if (addr >= 2000 && addr < 2100) return heldCoils.get(`${unitID}:${addr}`) || false;
    throw illegal();
  },
  getDiscreteInput(addr) {
    if (addr < 1000) return addr % 2 === 1;
    throw illegal();
  },
  readDeviceIdentification() {
    return { 0x00: "Seam Interop", 0x01: "modbus-serial-server", 0x02: "8.0.25" };
  },
};

const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port: port, unitID: 255 });
server.on("initialized", () => console.log("ready"));
server.on("serverError", (error) => {
  console.error(String(error));
  process.exit(1);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
