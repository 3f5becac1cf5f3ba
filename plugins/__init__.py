"""The built-in plugins of lossatlas.

They use only the public engine API (:mod:`lossatlas.engine`) and are declared in the
``lossatlas`` entry-point group exactly as a third party's plugins are, so
``lossatlas plugins`` lists them side by side and any of them can be disabled.
"""
