"""Omniverse Kit entry point of the `sage_gr00t` extension (imports omni: only Kit loads this module).

config/extension.toml lists it as a python module; Kit finds `SageGr00tExtension` (an `omni.ext.IExt`) here.
`import sage_gr00t` never imports this package, so the project works without Kit installed.
"""

from sage_gr00t.omni.extension import SageGr00tExtension, get_extension, stats

__all__ = ["SageGr00tExtension", "get_extension", "stats"]
