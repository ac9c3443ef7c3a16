// A Modbus/TCP master that is not built on pymodbus (modbus-serial's client), for the monitor's
// captures: it runs a fixed script of requests against a server and prints "done" when all answered.
//
//   node modbus_client.js HOST PORT
//
// Every request is awaited before the next; an exception answer from the server is part of the
// script (the last request reads an address the sim does not map), not a failure.
"use strict";
const ModbusRTU = require("modbus-serial");

const [host, portText] = process.argv.slice(2);
const port = parseInt(portText, 10);
if (!host || !(port > 0 && port < 65536)) {
  console.error("usage: node modbus_client.js HOST PORT");
  process.exit(2);
}

async function main() {
  const client = new ModbusRTU();
  await client.connectTCP(host, { port: port });
  client.setTimeout(5000);
  client.setID(1);
  await client.readInputRegisters(0, 6);
  await client.readDiscreteInputs(0, 2);
  await client.readCoils(0, 1);
  client.setID(2);
  await client.readHoldingRegisters(0, 1);
  await client.writeCoil(8, true);
  await client.writeCoils(8, [false, true]);
  client.setID(3);
  await client.readHoldingRegisters(0, 6);
  await client.writeRegisters(2, [0x3f80, 0x0000]);
  try {
    await client.readHoldingRegisters(9000, 2);
  } catch (error) {
    if (error.modbusCode !== 2) throw error;
  }
  client.close(() => console.log("done"));
}

main().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
