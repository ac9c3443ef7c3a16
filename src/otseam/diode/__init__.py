"""diode"""
