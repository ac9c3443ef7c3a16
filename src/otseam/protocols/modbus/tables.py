"""Function codes, exception codes, limits and device identification objects of the Modbus
Application Protocol Specification V1.1b3, and the vendor ranges and Schneider Electric's UMAS (function
90) that a monitor must recognise."""

from __future__ import annotations

from typing import Final

READ_COILS: Final = 0x01
READ_DISCRETE_INPUTS: Final = 0x02
READ_HOLDING_REGISTERS: Final = 0x03
READ_INPUT_REGISTERS: Final = 0x04
WRITE_SINGLE_COIL: Final = 0x05
WRITE_SINGLE_REGISTER: Final = 0x06
DIAGNOSTICS: Final = 0x08
WRITE_MULTIPLE_COILS: Final = 0x0F
WRITE_MULTIPLE_REGISTERS: Final = 0x10
REPORT_SERVER_ID: Final = 0x11
MASK_WRITE_REGISTER: Final = 0x16
READ_WRITE_MULTIPLE_REGISTERS: Final = 0x17
ENCAPSULATED_INTERFACE: Final = 0x2B
#: The MEI type of Read Device Identification (function 43).
READ_DEVICE_ID: Final = 0x0E
#: Schneider Electric UMAS (engineering: program transfer, run/stop) rides on function 90.
UMAS: Final = 90

#: Function codes assigned by the public specification.
PUBLIC_FUNCTIONS: Final = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
#: Ranges the specification leaves to vendors (user-defined): not an anomaly by themselves.
USER_DEFINED: Final = frozenset(range(65, 73)) | frozenset(range(100, 111))
READ_FUNCTIONS: Final = frozenset({1, 2, 3, 4, 20, 24})
#: Every function that changes a device's memory (coils, registers, file records).
WRITE_FUNCTIONS: Final = frozenset({5, 6, 15, 16, 21, 22, 23})
#: The table each of the four read functions reads: coils, discrete inputs, holding and input registers.
READ_TABLE: Final = {
    READ_COILS: "co",
    READ_DISCRETE_INPUTS: "di",
    READ_HOLDING_REGISTERS: "hr",
    READ_INPUT_REGISTERS: "ir",
}
#: The read function of each table.
TABLE_FUNCTION: Final = {table: function for function, table in READ_TABLE.items()}

FUNCTION_NAMES: Final = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_single_coil",
    6: "write_single_register",
    7: "read_exception_status",
    8: "diagnostics",
    11: "get_comm_event_counter",
    12: "get_comm_event_log",
    15: "write_multiple_coils",
    16: "write_multiple_registers",
    17: "report_server_id",
    20: "read_file_record",
    21: "write_file_record",
    22: "mask_write_register",
    23: "read_write_multiple_registers",
    24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
    90: "umas",
}

# Exception codes (section 7).
ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_DATA_ADDRESS: Final = 0x02
ILLEGAL_DATA_VALUE: Final = 0x03
SERVER_DEVICE_FAILURE: Final = 0x04
ACKNOWLEDGE: Final = 0x05
SERVER_DEVICE_BUSY: Final = 0x06
MEMORY_PARITY_ERROR: Final = 0x08
GATEWAY_PATH_UNAVAILABLE: Final = 0x0A
GATEWAY_TARGET_FAILED: Final = 0x0B
#: Machine names, as logged per transaction (ICSNPP's field values).
EXCEPTION_NAMES: Final = {
    ILLEGAL_FUNCTION: "illegal_function",
    ILLEGAL_DATA_ADDRESS: "illegal_data_address",
    ILLEGAL_DATA_VALUE: "illegal_data_value",
    SERVER_DEVICE_FAILURE: "server_device_failure",
    ACKNOWLEDGE: "acknowledge",
    SERVER_DEVICE_BUSY: "server_device_busy",
    MEMORY_PARITY_ERROR: "memory_parity_error",
    GATEWAY_PATH_UNAVAILABLE: "gateway_path_unavailable",
    GATEWAY_TARGET_FAILED: "gateway_target_failed_to_respond",
}
#: Words for messages to people.
EXCEPTION_TEXT: Final = {
    ILLEGAL_FUNCTION: "illegal function",
    ILLEGAL_DATA_ADDRESS: "illegal data address",
    ILLEGAL_DATA_VALUE: "illegal data value",
    SERVER_DEVICE_FAILURE: "server device failure",
    ACKNOWLEDGE: "acknowledge",
    SERVER_DEVICE_BUSY: "server device busy",
    MEMORY_PARITY_ERROR: "memory parity error",
    GATEWAY_PATH_UNAVAILABLE: "gateway path unavailable",
    GATEWAY_TARGET_FAILED: "gateway target device failed to respond",
}
#: Exceptions that mean "the device behind the gateway did not answer": a communication failure, not
#: a statement about the point.
GATEWAY_EXCEPTIONS: Final = frozenset({GATEWAY_PATH_UNAVAILABLE, GATEWAY_TARGET_FAILED})

# Quantity limits per request (sections 6.1-6.4, 6.11, 6.12).
MAX_READ_BITS: Final = 2000
MAX_READ_REGISTERS: Final = 125
MAX_WRITE_BITS: Final = 1968
MAX_WRITE_REGISTERS: Final = 123
#: A PDU (function code and data) is at most 253 bytes.
MAX_PDU: Final = 253

#: Device identification object ids (function 43, MEI 14) and what they hold.
DEVICE_ID_OBJECTS: Final = {
    0: "vendor",
    1: "product_code",
    2: "revision",
    3: "vendor_url",
    4: "product_name",
    5: "model_name",
    6: "user_application_name",
}


def exception_pdu(function: int, code: int) -> bytes:
    """The exception response to ``function``: the function code with its high bit set, then the code."""
    return bytes(((function | 0x80) & 0xFF, code))
