"""Loaded by the Windows CPython that scripts/test-windows.sh runs under Wine (this directory is
on its PYTHONPATH), never by a real Windows or Linux python.

Python 3.13's platform module asks WMI (_wmi) for the Windows version; under Wine 8.0 that
aborts the process ("Unimplemented function propsys.dll.VariantToString"), and hypothesis'
pytest plugin calls platform at start-up. Without _wmi, platform falls back to GetVersionEx.
"""
import sys

sys.modules["_wmi"] = None  # "import _wmi" now raises ImportError
