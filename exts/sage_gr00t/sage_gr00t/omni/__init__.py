"""Omniverse Kit side of the `sage_gr00t` extension.

- `sage_gr00t.omni.extension`: the `omni.ext.IExt` subclass Kit starts (config/extension.toml lists this
  module; it imports omni, so only Kit loads it);
- `sage_gr00t.omni.drivers`: physics-step / update-event subscriptions and the control-rate `Pacer`
  (omni imports inside the functions, so it imports anywhere).
`import sage_gr00t` never imports this package, and this package imports nothing from omni itself.
"""
