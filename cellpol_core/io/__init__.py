"""Files in and out: images, vector tables, exports, atomic writes, resampling, bundled resources.

The bottom layer of the engine: it imports nothing from ``detection``,
``synthetic`` or ``analysis`` (an import-linter contract checks this).
"""
