"""One folder per protocol the monitor reads: its parser (a reassembled byte stream in, messages out),
and what else is specific to it (the Modbus fast path for capture files). A new protocol is a new folder.
"""
