"""Modbus driver."""
